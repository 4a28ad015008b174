"""What the runner uses to watch a run: role messages, the backlog sampler, fault actions."""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from brokers.contract import Broker

from .roles import Control
from .scenario import Scenario

SAMPLE_EVERY_S = 0.5
CLOSED_LOOP_EVERY_S = 0.05  # closed loop: how often producers' credit is topped up from the backlog
log = logging.getLogger(__name__)


@dataclass
class RoleMessages:
    """Everything the roles said: ready, progress counts, final reports, errors; and which
    roles a fault action killed (they will say nothing more)."""

    scenario: Scenario
    expected: dict[str, int]
    ready: set[tuple[str, int]] = field(default_factory=set)
    progress: dict[tuple[str, int], int] = field(default_factory=dict)
    reports: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    killed: set[tuple[str, int]] = field(default_factory=set)
    seen_logs: list[str] = field(default_factory=list)

    def take(self, message: tuple[Any, ...]) -> None:
        kind, role, index = message[:3]
        if kind == "ready":
            self.ready.add((role, index))
        elif kind == "progress":
            self.progress[(role, index)] = message[3]
        elif kind == "result":
            self.reports[(role, index)] = {"recorder": message[3], "error": message[4], "extra": message[5]}
            if message[4]:
                self.errors.append(message[4])

    def total(self, role: str) -> int:
        return sum(v for (r, _), v in self.progress.items() if r == role)

    def finished(self, role: str) -> bool:
        done = sum(1 for r, _ in self.reports if r == role) + sum(1 for r, _ in self.killed if r == role)
        return done >= self.expected[role]

    def accepted(self) -> int:
        return sum(rep["recorder"]["counters"].get("accepted", 0) for (r, _), rep in self.reports.items()
                   if r == "producer")

    def missing(self) -> int:
        return sum(self.expected.values()) - len(self.reports) - len(self.killed)


class Inbox:
    """Where the runner reads the roles' messages: the read ends of one pipe per role process
    (a role that dies mid-message closes or garbles only its own pipe, which is then dropped),
    or one queue for roles that are threads."""

    def __init__(self, readers: list[Any] | None = None, shared: Any = None) -> None:
        self.readers = list(readers or [])
        self.shared = shared

    def receive(self, timeout: float) -> list[tuple[Any, ...]]:
        """The messages that arrive within ``timeout`` seconds (at least one wait)."""
        if self.shared is not None:
            try:
                return [self.shared.get(timeout=max(timeout, 0.001))]
            except queue_module.Empty:
                return []
        from multiprocessing.connection import wait

        out = []
        for reader in wait(self.readers, timeout=max(timeout, 0.001)) if self.readers else ():
            try:
                out.append(reader.recv())
            except (EOFError, OSError, ValueError, TypeError, AttributeError, ImportError) as exc:
                self.readers.remove(reader)  # its role died (maybe mid-message): nothing more will come
                if not isinstance(exc, EOFError):
                    log.warning("dropped a garbled message from a role (%r)", exc)
            except Exception as exc:  # noqa: BLE001 - an unpickling error of a cut message
                self.readers.remove(reader)
                log.warning("dropped a garbled message from a role (%r)", exc)
        if not out and not self.readers:
            time.sleep(max(timeout, 0.001))
        return out


def drain_messages(inbox: Inbox, watch: RoleMessages, timeout: float,
                   until: Callable[[], bool] | None = None) -> None:
    """Take the roles' messages for ``timeout`` seconds, or until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        for message in inbox.receive(left):
            watch.take(message)
        if deadline - time.monotonic() <= 0 or (until is not None and until()):
            return


class ClientQueueAdmin:
    """The runner's admin for a client that keeps its jobs in keys of its own
    (:attr:`brokers.clients.Client.queue_admin`): its counts and its removal come from the
    client's own view of the queue, everything else (describe, the server's connection) from
    the server's adapter, which also removes whatever the harness declared there."""

    def __init__(self, server_admin: Any, view: Any) -> None:
        self._server, self._view = server_admin, view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def stats(self) -> Any:
        return self._view.stats()

    held = Broker.held   # the contract's default: waiting + active + delayed of stats()

    def remove(self) -> None:
        try:
            self._view.remove()
        finally:
            self._server.remove()

    def close(self) -> None:
        try:
            self._view.close()
        finally:
            self._server.close()


def backlog_of(admin: Any) -> int | None:
    """Jobs waiting + delayed + active (where the broker tells), or None if it cannot answer."""
    try:
        stats = admin.stats()
    except Exception:  # noqa: BLE001 - a dead broker shows as an unknown backlog
        return None
    return sum(p for p in (stats.waiting, stats.delayed, stats.active) if p is not None)


class Sampler(threading.Thread):
    """Samples the broker's backlog every SAMPLE_EVERY_S in the background (a dead broker makes
    stats() slow to fail; the runner's own loop must not wait for it). In closed loop it reads
    the backlog every CLOSED_LOOP_EVERY_S and gives the producers ``max_backlog`` minus it as
    credit (:class:`~benchmarks.harness.roles.Credit`)."""

    def __init__(self, scenario: Scenario, admin: Any, control: Control, t0: int) -> None:
        super().__init__(daemon=True, name="backlog-sampler")
        self.scenario, self.admin, self.control, self.t0 = scenario, admin, control, t0
        self.samples: list[tuple[float, int | None]] = []
        self.latest: int | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        closed = self.scenario.mode == "closed"
        every = CLOSED_LOOP_EVERY_S if closed else SAMPLE_EVERY_S
        next_sample = 0.0
        while not self.halt.is_set():
            backlog = backlog_of(self.admin)
            self.latest = backlog
            now = (time.monotonic_ns() - self.t0) / 1e9
            if now >= next_sample:
                self.samples.append((now, backlog))
                next_sample = now + SAMPLE_EVERY_S
            if closed and backlog is not None:
                self.control.credit.refill(self.scenario.max_backlog - backlog)
            self.halt.wait(every)


@dataclass
class RunContext:
    """What a fault action may touch during a run."""

    scenario: Scenario
    url: str
    admin: Any
    runners: dict[tuple[str, int], Any]
    watch: RoleMessages
    t0: int

    def elapsed(self) -> float:
        return (time.monotonic_ns() - self.t0) / 1e9

    def kill_role(self, role: str, index: int) -> int:
        """SIGKILL one producer or consumer process (a contender's program first, then the
        process that bridges to it: :func:`benchmarks.contenders.bridge.kill_role`); the run
        goes on without it."""
        from ..contenders.bridge import kill_role

        proc = self.runners[(role, index)]
        self.watch.killed.add((role, index))
        kill_role(proc.pid)
        return proc.pid


@dataclass
class Action:
    """A fault to inject ``at_s`` seconds after the start; ``do`` returns what it did (for the
    timeline). Actions run in their own thread, so a slow one (a broker restart) does not stop
    the runner watching."""

    at_s: float
    do: Callable[[RunContext], str]
    done: bool = False


@dataclass
class Events:
    """Fault events on the run's timeline: (seconds since start, what happened)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def add(self, t_s: float, what: str) -> None:
        with self.lock:
            self.items.append({"t_s": round(t_s, 3), "what": what})

    def fire(self, action: Action, context: RunContext) -> None:
        action.done = True

        def go() -> None:
            started = context.elapsed()
            try:
                what = action.do(context)
            except Exception as exc:  # noqa: BLE001 - a failed fault is reported, not raised
                what = f"fault action failed: {exc}"
                context.watch.errors.append(what)
            self.add(started, what)

        thread = threading.Thread(target=go, daemon=True, name="fault-action")
        thread.start()
        self.threads.append(thread)

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)
