"""The one worker loop: the rules of ``Worker.run``, written once.

Every worker keeps the same rules (the contract's ``Worker.run``):

* it takes jobs while it has free slots and is not stopping, and while ``max_jobs`` (counting
  jobs settled, jobs running and jobs finished but not yet settled) and ``timeout`` allow;
* it ends once it is stopping, has settled ``max_jobs`` or reached ``timeout``, and holds
  nothing; or once it has held nothing and got nothing for ``idle_timeout`` seconds;
* whatever it still holds when it ends is settled before ``run`` returns;
* each settlement the broker recorded is counted once and the hooks are told
  (:meth:`brokers.contract.Worker._tally`).

:class:`RunLimits` holds those rules. :class:`PollingWorker` is the loop for brokers a worker
polls: fetch jobs, run them (:class:`brokers.dispatch.JobRunner`), settle them, fetch again
(the Redis adapter, the in-process adapter). An adapter whose broker pushes jobs into a
callback that must also settle them (AMQP with pika) drives its own loop, with the same
:class:`RunLimits` and the same counting, as saq's and dramatiq's workers do over their
brokers' primitives (brokers/amqp/worker.py says why it cannot be this loop).
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from .contract import BrokerUnavailable, Handler, Job, Worker, WorkerReport
from .dispatch import JobRunner, Settlement, reject

log = logging.getLogger(__name__)


@dataclass
class RunLimits:
    """The limits one call of ``Worker.run`` was given, and the clock they are measured on.

    :param max_jobs: settle this many jobs, then stop (None: no limit).
    :param idle_timeout: stop after this many seconds holding nothing and getting nothing.
    :param timeout: stop taking jobs after this many seconds in all; settle what is held.
    """

    max_jobs: int | None = None
    idle_timeout: float | None = None
    timeout: float | None = None
    started: float = field(default_factory=time.monotonic)
    last_activity: float = 0.0

    def __post_init__(self) -> None:
        self.last_activity = self.started

    def room(self, report: WorkerReport, holding: int) -> int | None:
        """How many more jobs ``max_jobs`` allows while ``holding`` are taken and not settled."""
        if self.max_jobs is None:
            return None
        return max(self.max_jobs - report.settled - holding, 0)

    def quota_met(self, report: WorkerReport) -> bool:
        return self.max_jobs is not None and report.settled >= self.max_jobs

    def timed_out(self, now: float | None = None) -> bool:
        return self.timeout is not None and (now or time.monotonic()) - self.started >= self.timeout

    def may_take(self, stopping: bool, report: WorkerReport, holding: int, now: float | None = None) -> bool:
        """True while new jobs may be taken."""
        room = self.room(report, holding)
        return not stopping and not self.timed_out(now) and (room is None or room > 0)

    def cap(self, want: int, report: WorkerReport, holding: int) -> int:
        """``want`` jobs, fewer if ``max_jobs`` allows fewer."""
        room = self.room(report, holding)
        return want if room is None else min(want, room)

    def finished(self, stopping: bool, report: WorkerReport, now: float | None = None) -> bool:
        """True once the worker must end as soon as it holds nothing."""
        return stopping or self.quota_met(report) or self.timed_out(now)

    def touch(self) -> None:
        """Something happened (a job was taken or finished): the idle clock starts again."""
        self.last_activity = time.monotonic()

    def idle_left(self, now: float | None = None) -> float | None:
        if self.idle_timeout is None:
            return None
        return max(self.idle_timeout - ((now or time.monotonic()) - self.last_activity), 0.0)

    def idle_expired(self, now: float | None = None) -> bool:
        left = self.idle_left(now)
        return left is not None and left <= 0.0


class Delivery(NamedTuple):
    """A job a worker fetched: the job, why it must be rejected unrun (or None), the adapter's
    handle for settling it (lock token, delivery tag...)."""

    job: Job
    bad: str | None
    ref: Any


@dataclass
class Fetched:
    """What one exchange with the broker brought back."""

    deliveries: list[Delivery] = field(default_factory=list)
    next_due_ms: int = 0  # when the earliest delayed job is due (epoch ms), 0 if none or unknown


class PollingWorker(Worker):
    """A worker that polls its broker: fetch, run, settle, fetch again.

    Subclasses provide the primitives :meth:`_begin`, :meth:`_exchange`,
    :meth:`_wait_for_work` and :meth:`_release`; this class runs the loop.

    :param handlers: job type -> handler, or one handler for every type.
    :param concurrency: jobs run at once (on threads when > 1; inline when 1).
    """

    #: errors of the broker connection that are retried for ``reconnect_for_s`` seconds
    transient_errors: tuple[type[BaseException], ...] = ()
    reconnect_for_s: float = 30.0
    #: jobs one fetch takes for a concurrency-1 worker (it runs them one after the other)
    inline_batch: int = 1
    #: how long to wait for a running job to finish when nothing could be fetched
    busy_poll_s: float = 0.2
    #: longest wait for new work while idle: bounds how long ``stop()`` takes to be noticed
    idle_block_s: float = 1.0

    def __init__(self, handlers: Mapping[str, Handler] | Handler, concurrency: int) -> None:
        super().__init__()
        self.handlers = handlers
        self.concurrency = concurrency
        self._broker_lost = False

    # ---------------------------------------------------------------------------- primitives
    def _begin(self) -> None:
        """Open what a run needs (connections, lock renewal)."""

    @abstractmethod
    def _exchange(self, settlements: list[Settlement], want: int) -> Fetched:
        """Record ``settlements`` and fetch up to ``want`` jobs, in as few round trips as the
        broker allows.

        The list is the loop's own: remove each settlement the broker recorded from it *in
        place* (``settlements[:] = ...``, never a new list) and count it with :meth:`_tally`,
        so that after an error only the ones not recorded remain.

        The lost-reply rule: when a call raises one of :attr:`transient_errors` (the connection
        dropped), the loop keeps every settlement still in the list and calls again later with
        them, and the broker may already have recorded some of them before its reply was lost.
        That second call must be harmless and each settlement counted once: the Redis adapter
        sends the very same script call again (same call id, which the script remembers, so a
        call that ran answers with its first result: ``_unanswered`` in
        brokers/bullmq_redis/worker.py); an adapter that cannot tell must say which outcome it
        counts. tests/unit/test_worker_loop_rules.py checks the loop's side of this rule."""

    @abstractmethod
    def _wait_for_work(self, seconds: float) -> None:
        """Sleep until jobs may be ready (or ``seconds`` passed)."""

    def _release(self) -> None:
        """Close what :meth:`_begin` opened."""

    def _watch_for_work(self, runner: JobRunner, on: bool) -> None:
        """While jobs run and slots are free, an adapter that can tell when new work is ready
        wakes the loop (``runner.wake()``) instead of letting it wait ``busy_poll_s``."""

    def _where(self) -> str:
        """The broker, for messages (no secrets)."""
        return type(self).__name__

    # ---------------------------------------------------------------------------------- loop
    def run(self, *, max_jobs: int | None = None, idle_timeout: float | None = None,
            timeout: float | None = None) -> WorkerReport:
        limits = RunLimits(max_jobs, idle_timeout, timeout)
        runner = JobRunner(self.handlers, self.concurrency, self.hooks)
        window = self.inline_batch if runner.inline else self.concurrency
        pending: list[Settlement] = []
        next_due_ms = 0
        failing_since: float | None = None
        self._broker_lost = False
        self._begin()
        try:
            while True:
                pending += runner.collect()
                holding = runner.in_flight + len(pending)
                want = 0
                if limits.may_take(self.stopping, self.report, holding):
                    want = limits.cap(max(window - runner.in_flight, 0), self.report, holding)
                if pending or want:
                    try:
                        fetched = self._exchange(pending, want)
                        failing_since = None
                    except self.transient_errors as exc:
                        failing_since = self._transient(exc, failing_since)
                        continue
                    next_due_ms = fetched.next_due_ms
                    for job, bad, ref in fetched.deliveries:
                        self._received(job)
                        if bad is not None:
                            runner.post(reject(job, bad, ref))
                        else:
                            runner.submit(job, ref)
                    if fetched.deliveries:
                        limits.touch()
                        continue
                if runner.in_flight:
                    wait = self.busy_poll_s
                    if next_due_ms:
                        wait = min(wait, max((next_due_ms - time.time() * 1000) / 1000, 0.001))
                    self._watch_for_work(runner, want > 0)
                    try:
                        pending += runner.collect(timeout=wait)
                    finally:
                        self._watch_for_work(runner, False)
                    limits.touch()
                    continue
                # Nothing held, nothing fetched: end, or sleep until there may be work.
                now = time.monotonic()
                if limits.finished(self.stopping, self.report, now) or limits.idle_expired(now):
                    break
                block = self.idle_block_s
                if next_due_ms:
                    block = min(block, max((next_due_ms - time.time() * 1000) / 1000, 0.0))
                left = limits.idle_left(now)
                if left is not None:
                    block = min(block, left)
                try:
                    self._wait_for_work(block)
                    failing_since = None
                except self.transient_errors as exc:
                    failing_since = self._transient(exc, failing_since)
        finally:
            self._stop.set()
            try:
                runner.shutdown()
                leftovers = pending + runner.collect()
                if leftovers and not self._broker_lost:
                    try:
                        self._exchange(leftovers, 0)
                    except Exception as exc:  # noqa: BLE001 - whatever it is, the jobs must be let go
                        log.warning("%s could not settle %d jobs before stopping (%s); the broker hands "
                                    "them out again", self._where(), len(leftovers), exc)
            finally:
                self._release()
        return self.report

    def _transient(self, exc: BaseException, failing_since: float | None) -> float:
        """A connection error: count it once per outage, give up after ``reconnect_for_s``."""
        now = time.monotonic()
        if failing_since is None:
            failing_since = now
            self._connection_lost(exc)
            log.warning("worker lost %s (%s); reconnecting", self._where(), exc)
        if now - failing_since > self.reconnect_for_s:
            self._broker_lost = True
            raise BrokerUnavailable(f"{self._where()} failed for {self.reconnect_for_s:.0f} s (unreachable, or "
                                    f"refusing): {type(exc).__name__}: {exc}") from None
        time.sleep(0.2)
        return failing_since
