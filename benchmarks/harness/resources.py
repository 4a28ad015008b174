"""CPU seconds of the broker process and of the client processes, with psutil.

The broker's pid is found only when it runs on this host, by its driver (Redis tells its own
pid; RabbitMQ's Erlang VM is the process listening on the AMQP port). In a container or on
another host the broker's CPU is reported as unknown (None), never guessed.
"""

from __future__ import annotations

import psutil

from brokers import registry


def broker_pid(kind: str, url: str) -> int | None:
    """The broker's pid when it runs on this host (its driver knows how to find it), else None."""
    return registry.get(kind).server_pid(url)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (children not included)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class CpuMeter:
    """CPU used by a set of processes between ``begin()`` and ``end()``."""

    def __init__(self, pids: dict[str, list[int | None]]) -> None:
        self.pids = pids
        self.start: dict[str, list[float | None]] = {}
        self.used: dict[str, float | None] = {}

    def begin(self) -> None:
        self.start = {group: [cpu_seconds(p) for p in pids] for group, pids in self.pids.items()}

    def end(self) -> dict[str, float | None]:
        for group, pids in self.pids.items():
            total: float | None = 0.0
            for pid, before in zip(pids, self.start.get(group, []), strict=False):
                after = cpu_seconds(pid)
                if before is None or after is None:
                    total = None
                    break
                total += after - before  # type: ignore[operator]
            self.used[group] = round(total, 3) if total is not None else None
        return self.used
