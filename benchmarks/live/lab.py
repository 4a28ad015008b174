"""The live lab: both brokers side by side, one timeline of actions and their consequences.

The page may only ask for the actions in :data:`ACTIONS`, each with checked parameters; the
answer and every consequence the lab notices (a worker died, jobs came back, an urgent job ran)
become labelled markers on the broker's timeline.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from typing import Any, Callable

from brokers import registry

from .load import LoadSettings
from .side import SPECIALS, Side

HISTORY_S = 120.0
SAMPLE_S = 0.5


class UnknownAction(KeyError):
    """The page asked for an action that is not in ACTIONS."""


class Busy(RuntimeError):
    """Another action is still running."""


class Lab:
    """``Lab(kinds).start()``; ``act(name, params)``; ``snapshot()``; ``close()`` (idempotent,
    also on Ctrl-C: it stops every load process and private broker it started)."""

    def __init__(self, kinds: list[str] | None = None, *, shared: bool = False) -> None:
        self.kinds = kinds or registry.compared_kinds()
        self.shared = shared
        self.token = secrets.token_urlsafe(16)
        self.t0 = time.time()
        self.markers: deque[dict[str, Any]] = deque(maxlen=400)
        self.history: dict[str, deque[dict[str, Any]]] = {k: deque(maxlen=int(HISTORY_S / SAMPLE_S))
                                                          for k in self.kinds}
        self.sides: dict[str, Side] = {}
        self.lock = threading.Lock()
        self.acting = threading.Lock()   # one action at a time: a double click must not start two loads
        self.stopping = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True, name="live-sampler")
        self.seq = 0

    def start(self) -> "Lab":
        try:
            for kind in self.kinds:
                self.sides[kind] = Side(kind, self.mark, shared=self.shared).start()
                self.sides[kind].poll()
        except BaseException:
            self.close()
            raise
        self.sampler.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        if self.sampler.is_alive():
            self.sampler.join(5)
        for side in self.sides.values():
            try:
                side.close()
            except Exception as exc:  # noqa: BLE001 - the other side must be stopped as well
                print(f"brokerbench live: stopping {side.kind}: {exc}")

    def pids(self) -> list[int]:
        return [pid for side in self.sides.values() for pid in side.pids()]

    # ------------------------------------------------------------------ markers and sampling
    def mark(self, kind: str, text: str) -> None:
        with self.lock:
            self.seq += 1
            self.markers.append({"n": self.seq, "t": round(time.time() - self.t0, 2), "side": kind, "text": text})

    def _sample(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            for kind, side in self.sides.items():
                try:
                    state = side.poll()
                except Exception as exc:  # noqa: BLE001 - the page shows it; sampling goes on
                    state = {"error": str(exc)}
                c, q = state.get("counts", {}), state.get("queue", {})
                backlog = sum(v for k, v in q.items() if k in ("waiting", "prioritized", "delayed") and v)
                self.history[kind].append({"t": round(time.time() - self.t0, 2), "in": c.get("in_per_s"),
                                           "out": c.get("out_per_s"), "p99": c.get("p99_ms"),
                                           "backlog": None if not q or "error" in q else backlog})

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            markers = list(self.markers)
        return {"t": round(time.time() - self.t0, 2), "shared": self.shared, "pids": self.pids(),
                "sides": {k: {**s.state, "history": list(self.history[k])} for k, s in self.sides.items()},
                "markers": markers, "actions": sorted(ACTIONS)}

    # ------------------------------------------------------------------ actions
    def act(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one whitelisted action; returns what was done per broker. Raises UnknownAction,
        Busy while another action runs, ValueError for bad parameters, PermissionError where
        --shared forbids; an error on the second broker names what the first one did."""
        if name not in ACTIONS:
            raise UnknownAction(name)
        targets = self._targets(params.get("side", "all"))
        if not self.acting.acquire(blocking=False):
            raise Busy("another action is still running: try again when it answers")
        done: dict[str, str] = {}
        try:
            for kind in targets:
                try:
                    text = ACTIONS[name](self, self.sides[kind], params)
                except Exception as exc:
                    if done:
                        raise type(exc)(f"{kind}: {exc} (already done: {done})") from exc
                    raise
                self.mark(kind, text)
                done[kind] = text
        finally:
            self.acting.release()
        return done

    def _targets(self, side: Any) -> list[str]:
        if side in (None, "all", "both"):
            return list(self.sides)
        if side not in self.sides:
            raise ValueError(f"side must be one of {', '.join(self.sides)} or 'all'")
        return [side]


def _settings(params: dict[str, Any]) -> LoadSettings:
    fields = {k: params[k] for k in ("rate", "profile", "consumers", "concurrency", "lock_s", "time_scale")
              if k in params}
    try:
        typed = {k: (str(v) if k == "profile" else int(v) if k in ("consumers", "concurrency") else float(v))
                 for k, v in fields.items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad load settings: {exc}") from exc
    return LoadSettings(**typed).validated()


def _start(lab: Lab, side: Side, params: dict[str, Any]) -> str:
    settings = _settings(params)
    side.start_load(settings)
    return (f"load started: {settings.rate:g} jobs/s of {settings.profile}, {settings.consumers} workers x "
            f"{settings.concurrency}" + (f", lock {settings.lock_s:g} s" if side.driver.recovery_settings
                                        and "lock_duration_ms" in side.driver.recovery_settings[0].options else ""))


def _stop(lab: Lab, side: Side, params: dict[str, Any]) -> str:
    side.stop_load()
    return "load stopped"


def _special(lab: Lab, side: Side, params: dict[str, Any]) -> str:
    what = params.get("what")
    if what not in SPECIALS:
        raise ValueError(f"what must be one of {', '.join(SPECIALS)}")
    return side.publish_special(what)


def _profile(lab: Lab, side: Side, params: dict[str, Any]) -> str:
    names = params.get("profiles") or {}
    name = names.get(side.kind) if isinstance(names, dict) else None
    if not name:
        raise ValueError(f"profiles must name a profile for {side.kind}")
    return side.set_profile(str(name))


ACTIONS: dict[str, Callable[[Lab, Side, dict[str, Any]], str]] = {
    "start_load": _start,
    "stop_load": _stop,
    "kill_worker": lambda lab, side, params: side.kill_worker(),
    "kill_broker": lambda lab, side, params: side.kill_broker(),
    "set_profile": _profile,
    "drop_connections": lambda lab, side, params: side.drop_connections(),
    "publish": _special,
}
