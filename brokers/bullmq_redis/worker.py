"""The BullMQ-style worker: batch fetch, batch settle, lock renewal, stalled-job recovery.

Delivery guarantee: at-least-once. A job taken by this worker sits in ``active`` under
``<id>:lock`` (our token, TTL ``lock_duration_ms``) which a maintenance thread renews every
half lock duration. If this process dies, the lock expires; the stalled check (run by every
worker, at most once per ``stalled_interval_ms`` per queue) then moves the job back to wait, so
it runs again: redelivery takes between ``lock_duration_ms`` and ``lock_duration_ms +
stalled_interval_ms``. After ``max_stalled_count`` such recoveries the job is failed.

Throughput: the I/O loop takes up to ``concurrency`` jobs per round trip (moveToActive.lua),
and each later round trip settles every job that finished meanwhile and takes as many new
ones (moveToFinished.lua). With concurrency 1 that is one round trip per job, as in BullMQ.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import redis
from redis.exceptions import ConnectionError, TimeoutError

from ..contract import BrokerUnavailable, Handler, Hooks, Outcome, Worker, WorkerReport
from ..dispatch import JobRunner, Settlement, reject
from ..urls import redact
from .codec import job_from_hash, keep_arg, pairs_to_dict
from .connection import connect
from .keys import QueueKeys

if TYPE_CHECKING:
    from .broker import BullMQRedisBroker

log = logging.getLogger(__name__)

MAX_IDLE_BLOCK_S = 1.0  # longest BZPOPMIN wait: bounds how long stop() takes when idle


class RedisWorker(Worker):
    def __init__(self, broker: "BullMQRedisBroker", handlers: Mapping[str, Handler] | Handler, *,
                 concurrency: int = 1, lanes: Sequence[str] | None = None, hooks: Sequence[Hooks] = (),
                 lock_duration_ms: int = 30_000, stalled_interval_ms: int = 30_000,
                 max_stalled_count: int = 1, drain_delay_s: float = 5.0, name: str | None = None,
                 reconnect_for_s: float = 30.0) -> None:
        super().__init__()
        unknown = set(lanes or ()) - set(broker.lanes)
        if unknown:
            raise ValueError(f"unknown lanes {sorted(unknown)}; this broker has {broker.lanes}")
        if lock_duration_ms < 100 or stalled_interval_ms < 100:
            raise ValueError("lock_duration_ms and stalled_interval_ms must be at least 100 ms")
        self.broker = broker
        self.handlers = handlers
        self.concurrency = concurrency
        self.hooks = tuple(hooks)
        self.lanes = list(lanes or broker.lanes)
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms
        self.max_stalled_count = max_stalled_count
        self.drain_delay_s = drain_delay_s
        self.reconnect_for_s = reconnect_for_s
        self.id = name or f"bb-{uuid.uuid4().hex[:10]}"
        self._tokens = itertools.count(1)
        self._held: dict[tuple[str, str], str] = {}  # (lane, job id) -> lock token
        self._held_lock = threading.Lock()
        self._blocking: redis.Redis | None = None
        self._done = threading.Event()  # stops lock renewal once every job is settled
        self._broker_lost = False

    # ------------------------------------------------------------------------------ the loop

    def run(self, *, max_jobs: int | None = None, idle_timeout: float | None = None,
            timeout: float | None = None) -> WorkerReport:
        broker = self.broker
        runner = JobRunner(self.handlers, self.concurrency, self.hooks)
        self._blocking = connect(broker.url, role="worker-block", socket_timeout=MAX_IDLE_BLOCK_S + 10,
                                 reconnect_for=self.reconnect_for_s)
        maintenance = threading.Thread(target=self._maintain, name=f"{self.id}-locks", daemon=True)
        maintenance.start()
        started = last_activity = time.monotonic()
        pending: list[Settlement] = []
        next_delayed_ms = 0
        rotation = 0
        failing_since: float | None = None
        try:
            while True:
                pending += runner.collect()
                want = 0 if self.stopping else runner.free_slots()
                if max_jobs is not None:
                    want = min(want, max(max_jobs - self.report.settled - runner.in_flight - len(pending), 0))
                if timeout is not None and time.monotonic() - started >= timeout:
                    want = 0
                fetched = 0
                if pending or want:
                    try:
                        # settled lanes are taken out of ``pending`` as their calls succeed
                        fetched, next_delayed_ms = self._settle_and_fetch(pending, want, runner, rotation)
                        failing_since = None
                    except (ConnectionError, TimeoutError, BrokerUnavailable) as exc:
                        failing_since = self._on_connection_error(exc, failing_since)
                        continue
                    rotation += 1
                    if fetched:
                        last_activity = time.monotonic()
                        continue
                if runner.in_flight:
                    pending += runner.collect(timeout=0.2)
                    last_activity = time.monotonic()
                    continue
                # Nothing in flight, nothing fetched: stop, or sleep until there is work.
                now = time.monotonic()
                if (self.stopping or (max_jobs is not None and self.report.settled >= max_jobs)
                        or (timeout is not None and now - started >= timeout)
                        or (idle_timeout is not None and now - last_activity >= idle_timeout)):
                    break
                block = min(self.drain_delay_s, MAX_IDLE_BLOCK_S)
                if next_delayed_ms:
                    block = min(block, max((next_delayed_ms - time.time() * 1000) / 1000, 0.0))
                if idle_timeout is not None:
                    block = min(block, max(idle_timeout - (now - last_activity), 0.0))
                try:
                    self._wait_for_marker(block)
                    failing_since = None
                except (ConnectionError, TimeoutError) as exc:
                    failing_since = self._on_connection_error(exc, failing_since)
        finally:
            self._stop.set()
            try:
                runner.shutdown()
                leftovers = pending + runner.collect()
                if leftovers and not self._broker_lost:
                    try:
                        self._settle_and_fetch(leftovers, 0, runner, 0)
                    except Exception as exc:  # noqa: BLE001 - whatever it is, the locks must be let go
                        log.warning("worker %s could not settle %d jobs before stopping (%s); their locks "
                                    "expire and the stalled check re-runs them", self.id, len(leftovers), exc)
            finally:
                self._done.set()  # stop renewing locks, whatever happened above
                maintenance.join(timeout=1 if self._broker_lost else 5)
                if self._blocking is not None:
                    self._blocking.close()
        return self.report

    def _on_connection_error(self, exc: BaseException, failing_since: float | None) -> float:
        now = time.monotonic()
        if failing_since is None:
            failing_since = now
            self.report.reconnects += 1
            for hook in self.hooks:
                hook.connection_lost(exc)
            log.warning("worker %s lost Redis at %s (%s); reconnecting", self.id,
                        redact(self.broker.url), exc)
        if now - failing_since > self.reconnect_for_s:
            self._broker_lost = True
            raise BrokerUnavailable(f"Redis at {redact(self.broker.url)} unreachable for "
                                    f"{self.reconnect_for_s:.0f} s: {exc}") from None
        time.sleep(0.2)
        return failing_since

    def _wait_for_marker(self, block_s: float) -> None:
        """Sleep until a marker says jobs are ready (or delayed jobs come due), or block_s."""
        if block_s <= 0.001:
            return
        assert self._blocking is not None
        markers = [self.broker.lane_keys[lane].marker for lane in self.lanes]
        self._blocking.bzpopmin(markers, timeout=block_s)

    # ------------------------------------------------------------------- settle and fetch

    def _settle_and_fetch(self, settlements: list[Settlement], want: int, runner: JobRunner,
                          rotation: int) -> tuple[int, int]:
        """Settle per lane, fetch up to ``want`` jobs across lanes; returns (fetched, next due ms).

        Each lane's settlements are removed from ``settlements`` once its call succeeded, so a
        failure on a later lane leaves only the unsent ones to retry."""
        by_lane: dict[str, list[Settlement]] = {}
        for s in settlements:
            by_lane.setdefault(s.job.lane, []).append(s)
        order = self.lanes[rotation % len(self.lanes):] + self.lanes[:rotation % len(self.lanes)]
        fetched_total, next_due = 0, 0
        for lane in order:
            batch = by_lane.get(lane, [])
            fetch = want - fetched_total
            if not batch and fetch <= 0:
                continue
            keys = self.broker.lane_keys[lane]
            token = f"{self.id}:{next(self._tokens)}"
            now = int(time.time() * 1000)
            if batch:
                args: list[Any] = [len(batch), max(fetch, 0), token, self.lock_duration_ms, self.id]
                for s in batch:
                    args += self._settle_args(s)
                reply = self.broker.scripts.call("moveToFinished", keys, now, args)
                codes, due, jobs = reply[0], reply[1], reply[2:]
                settled = {id(s) for s in batch}
                settlements[:] = [s for s in settlements if id(s) not in settled]  # done: never sent again
                self._record_settled(lane, batch, codes)
            else:
                reply = self.broker.scripts.call(
                    "moveToActive", keys, now, [fetch, token, self.lock_duration_ms, self.id])
                due, jobs = reply[0], reply[1:]
            fetched_total += self._start_jobs(lane, token, jobs, runner)
            if due and (not next_due or int(due) < next_due):
                next_due = int(due)
        return fetched_total, next_due

    def _settle_args(self, s: Settlement) -> list[Any]:
        _lane, token = s.ref
        options = s.job.options
        if s.outcome is Outcome.COMPLETED:
            return [s.job.id, token, "completed", s.result_json or "null",
                    keep_arg(options.remove_on_complete), 0, ""]
        if s.outcome is Outcome.FAILED:
            return [s.job.id, token, "failed", s.reason or "", keep_arg(options.remove_on_fail), 0,
                    s.stacktrace or ""]
        kind = "delayed" if s.delay_ms > 0 else "retry"
        return [s.job.id, token, kind, s.reason or "", -1, s.delay_ms, s.stacktrace or ""]

    def _record_settled(self, lane: str, batch: list[Settlement], codes: list[int]) -> None:
        with self._held_lock:
            for s in batch:
                self._held.pop((lane, s.job.id), None)
        for s, code in zip(batch, codes):
            outcome = s.outcome if code == 0 else Outcome.LOST_LOCK
            setattr(self.report, outcome.value, getattr(self.report, outcome.value) + 1)
            for hook in self.hooks:
                hook.job_settled(s.job, outcome, s.reason)

    def _start_jobs(self, lane: str, token: str, flat: list[Any], runner: JobRunner) -> int:
        count = 0
        for i in range(0, len(flat), 2):
            job_id = flat[i].decode()
            job, bad = job_from_hash(job_id, pairs_to_dict(flat[i + 1]), lane)
            with self._held_lock:
                self._held[(lane, job_id)] = token
            if job.redelivered:
                self.report.redelivered += 1
            if bad is not None:
                runner.post(reject(job, bad, (lane, token)))
            else:
                runner.submit(job, (lane, token))
            count += 1
        return count

    # ------------------------------------------------------------------------- maintenance

    def _maintain(self) -> None:
        """Renew our locks every half lock duration; run the stalled check every interval."""
        renew_every = self.lock_duration_ms / 2000
        next_stalled_check = 0.0
        while not self._done.wait(timeout=0 if next_stalled_check == 0 else
                                  min(renew_every, self.stalled_interval_ms / 1000)):
            try:
                self._extend_locks()
                if time.monotonic() >= next_stalled_check:
                    self._check_stalled()
                    next_stalled_check = time.monotonic() + self.stalled_interval_ms / 1000
            except Exception as exc:  # noqa: BLE001 - e.g. OOM under maxmemory: keep renewing, say so
                log.warning("worker %s: lock renewal/stalled check failed: %s", self.id, exc)

    def _extend_locks(self) -> None:
        with self._held_lock:
            held = list(self._held.items())
        by_lane: dict[str, list[Any]] = {}
        for (lane, job_id), token in held:
            by_lane.setdefault(lane, []).extend([job_id, token])
        for lane, pairs in by_lane.items():
            lost = self.broker.scripts.call("extendLocks", self.broker.lane_keys[lane],
                                            int(time.time() * 1000), [self.lock_duration_ms, *pairs])
            for job_id in lost:
                log.warning("worker %s lost the lock of job %s (lane %s): another worker may run it",
                            self.id, job_id.decode(), lane)

    def _check_stalled(self) -> None:
        for lane in self.lanes:
            keys: QueueKeys = self.broker.lane_keys[lane]
            requeued, failed = self.broker.scripts.call(
                "moveStalledJobsToWait", keys, int(time.time() * 1000),
                [self.max_stalled_count, self.stalled_interval_ms])
            if requeued or failed:
                log.info("stalled check on %s: %d jobs back to wait, %d failed", keys.name,
                         len(requeued), len(failed))

    def close(self) -> None:
        self.stop()
