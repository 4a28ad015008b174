"""A lab with stand-in brokers: the web layer and the action checks, tested without any broker."""

from __future__ import annotations

from typing import Any, Callable

from benchmarks.live.lab import Lab
from brokers import registry


class FakeSide:
    """Answers every action with a line of text, or raises what ``fail[action]`` gives."""

    def __init__(self, kind: str) -> None:
        self.kind, self.driver = kind, registry.get(kind)
        self.admin = None
        self.state: dict[str, Any] = {"kind": kind, "counts": {}}
        self.fail: dict[str, Callable[[], BaseException]] = {}
        self.calls: list[tuple[str, Any]] = []

    def pids(self) -> list[int]:
        return []

    def _do(self, action: str, arg: Any = None) -> str:
        self.calls.append((action, arg))
        if action in self.fail:
            raise self.fail[action]()
        return f"{action} done"

    def start_load(self, settings: Any) -> None:
        self._do("start_load", settings)

    def stop_load(self) -> None:
        self._do("stop_load")

    def kill_worker(self) -> str:
        return self._do("kill_worker")

    def kill_broker(self) -> str:
        return self._do("kill_broker")

    def set_profile(self, name: str) -> str:
        return self._do("set_profile", name)

    def drop_connections(self) -> str:
        return self._do("drop_connections")

    def publish_special(self, what: str) -> str:
        return self._do("publish", what)


def fake_lab() -> Lab:
    lab = Lab(["redis", "rabbitmq"])
    lab.sides = {kind: FakeSide(kind) for kind in lab.kinds}   # type: ignore[misc]
    return lab
