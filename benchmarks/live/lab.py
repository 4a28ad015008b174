"""The live lab: both brokers side by side, one timeline of actions and their consequences.

The page may only ask for the actions in :data:`ACTIONS`, each with its parameters checked for
type and range first (:mod:`benchmarks.live.params`); the answer and every consequence the lab
notices (a worker died, jobs came back, an urgent job ran) become labelled markers on the
broker's timeline. Two random tokens: ``token`` (the teacher's: it may act) and ``read_token``
(the students': it may only look).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from typing import Any, Callable

from brokers import registry

from .params import ALLOWED, ActionError, ActionFailed, Busy, Checked, UnknownAction, check
from .side import Side

HISTORY_S = 120.0
SAMPLE_S = 0.5


__all__ = ["ACTIONS", "ActionError", "ActionFailed", "Busy", "Lab", "UnknownAction"]


class Lab:
    """``Lab(kinds).start()``; ``act(name, params)``; ``snapshot()``; ``close()`` (idempotent,
    also on Ctrl-C: it stops every load process and private broker it started)."""

    def __init__(self, kinds: list[str] | None = None, *, shared: bool = False,
                 clients: dict[str, str] | None = None) -> None:
        self.kinds = kinds or registry.compared_kinds()
        self.shared = shared
        self.clients = dict(clients or {})   # kind -> the contender that runs its side's load
        self.token = secrets.token_urlsafe(16)        # the teacher's: page, state, events and actions
        self.read_token = secrets.token_urlsafe(16)   # the students': page, state and events only
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
                self.sides[kind] = Side(kind, self.mark, shared=self.shared, client=self.clients.get(kind, "")).start()
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
    def profile_names(self) -> dict[str, list[str]]:
        """Each side's durability profiles, by name."""
        return {kind: [p.name for p in registry.get(kind).durability] for kind in self.sides}

    def act(self, name: Any, params: dict[str, Any]) -> dict[str, str]:
        """Run one whitelisted action; returns what was done per broker. Every error is an
        ActionError with its HTTP status: UnknownAction, BadParameter (checked before anything
        is done), Busy while another action runs, ActionFailed when a broker's part failed (the
        original error as its ``__cause__``, what was already done in its message)."""
        if not isinstance(name, str) or name not in ACTIONS:
            raise UnknownAction(f"unknown action {str(name)[:40]!r}")
        checked = check(name, params, self.profile_names())
        if not self.acting.acquire(blocking=False):
            raise Busy("another action is still running: try again when it answers")
        done: dict[str, str] = {}
        try:
            for kind in checked.targets:
                try:
                    text = ACTIONS[name](self, self.sides[kind], checked)
                except Exception as exc:
                    raise ActionFailed(kind, exc, done) from exc
                self.mark(kind, text)
                done[kind] = text
        finally:
            self.acting.release()
        return done


def _start(lab: Lab, side: Side, params: Checked) -> str:
    settings = params.settings
    assert settings is not None   # check() sets it for start_load
    side.start_load(settings)
    return (f"load started: {settings.rate:g} jobs/s of {settings.profile}, {settings.consumers} workers x "
            f"{settings.concurrency}" + (f", lock {settings.lock_s:g} s" if side.driver.recovery_settings
                                        and "lock_duration_ms" in side.driver.recovery_settings[0].options else ""))


def _stop(lab: Lab, side: Side, params: Checked) -> str:
    side.stop_load()
    return "load stopped"


def _special(lab: Lab, side: Side, params: Checked) -> str:
    return side.publish_special(str(params.what))


def _profile(lab: Lab, side: Side, params: Checked) -> str:
    assert params.profiles is not None   # check() names one for every target
    return side.set_profile(params.profiles[side.kind])


ACTIONS: dict[str, Callable[[Lab, Side, Checked], str]] = {
    "start_load": _start,
    "stop_load": _stop,
    "kill_worker": lambda lab, side, params: side.kill_worker(),
    "kill_broker": lambda lab, side, params: side.kill_broker(),
    "set_profile": _profile,
    "drop_connections": lambda lab, side, params: side.drop_connections(),
    "publish": _special,
}
assert set(ACTIONS) == set(ALLOWED), "every action has its parameters listed in params.ALLOWED"
