"""The BullMQ-style worker: batch fetch and batch settle, over the one worker loop.

Delivery guarantee: at-least-once. A job taken by this worker sits in ``active`` under
``<id>:lock`` (our token, TTL ``lock_duration_ms``), which :mod:`.locks` renews every half lock
duration. If this process dies, the lock expires; the stalled check (run by every worker, at
most once per ``stalled_interval_ms`` per queue) then moves the job back to wait, so it runs
again: redelivery takes between ``lock_duration_ms`` and ``lock_duration_ms + 2 x
stalled_interval_ms`` (a check may run just before the lock expires; the next one comes an
interval later). After ``max_stalled_count`` such recoveries the job is failed.

Throughput: the loop (:class:`brokers.worker_loop.PollingWorker`) takes up to ``concurrency``
jobs per round trip (moveToActive.lua), and each later round trip settles every job that
finished meanwhile and takes as many new ones (moveToFinished.lua). With concurrency 1 that
is one round trip per job, as in BullMQ.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import redis
from redis.exceptions import ConnectionError, TimeoutError

from ..contract import BrokerUnavailable, Handler, Hooks, Outcome
from ..dispatch import Settlement
from ..urls import redact
from ..worker_loop import Delivery, Fetched, PollingWorker
from .codec import job_from_hash, keep_arg, pairs_to_dict
from .connection import connect
from .locks import LockKeeper

if TYPE_CHECKING:
    from .broker import BullMQRedisBroker

MAX_IDLE_BLOCK_S = 1.0  # longest BZPOPMIN wait: bounds how long stop() takes when idle


class RedisWorker(PollingWorker):
    """Runs jobs of a BullMQ-style queue (see the module's text for the guarantee).

    :param broker: the adapter whose queue (and lanes) this worker consumes.
    :param handlers: job type -> handler, or one handler for every type.
    :param concurrency: jobs run at once, on threads when > 1 (BullMQ's ``concurrency``).
    :param lanes: lanes to consume (default: all of the broker's).
    :param hooks: observers of starts and settlements.
    :param lock_duration_ms: TTL of a job's lock, renewed every half of it (BullMQ: 30 s).
    :param stalled_interval_ms: how often the stalled check runs (BullMQ: 30 s).
    :param max_stalled_count: recoveries of one job before it is failed (BullMQ: 1).
    :param drain_delay_s: longest idle wait for the marker, capped at 1 s (BullMQ's drainDelay).
    :param name: the worker's name in job hashes (``pb``) and lock tokens; random by default.
    :param reconnect_for_s: how long connection errors are retried before the run gives up.
    """

    transient_errors = (ConnectionError, TimeoutError, BrokerUnavailable)

    def __init__(self, broker: "BullMQRedisBroker", handlers: Mapping[str, Handler] | Handler, *,
                 concurrency: int = 1, lanes: Sequence[str] | None = None, hooks: Sequence[Hooks] = (),
                 lock_duration_ms: int = 30_000, stalled_interval_ms: int = 30_000,
                 max_stalled_count: int = 1, drain_delay_s: float = 5.0, name: str | None = None,
                 reconnect_for_s: float = 30.0) -> None:
        super().__init__(handlers, concurrency)
        unknown = set(lanes or ()) - set(broker.lanes)
        if unknown:
            raise ValueError(f"unknown lanes {sorted(unknown)}; this broker has {broker.lanes}")
        if lock_duration_ms < 100 or stalled_interval_ms < 100:
            raise ValueError("lock_duration_ms and stalled_interval_ms must be at least 100 ms")
        self.broker = broker
        self.hooks = tuple(hooks)
        self.lanes = list(lanes or broker.lanes)
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms
        self.max_stalled_count = max_stalled_count
        self.drain_delay_s = drain_delay_s
        self.idle_block_s = min(drain_delay_s, MAX_IDLE_BLOCK_S)
        self.reconnect_for_s = reconnect_for_s
        self.id = name or f"bb-{uuid.uuid4().hex[:10]}"
        self._tokens = itertools.count(1)
        self._rotation = 0
        self._blocking: redis.Redis | None = None
        self.locks = LockKeeper(broker, self.id, self.lanes, lock_duration_ms=lock_duration_ms,
                                stalled_interval_ms=stalled_interval_ms, max_stalled_count=max_stalled_count)

    def _where(self) -> str:
        return f"Redis at {redact(self.broker.url)}"

    # -------------------------------------------------------------------------- primitives
    def _begin(self) -> None:
        self._blocking = connect(self.broker.url, role="worker-block", socket_timeout=MAX_IDLE_BLOCK_S + 10,
                                 reconnect_for=self.reconnect_for_s)
        self.locks.start()

    def _release(self) -> None:
        self.locks.stop(wait_s=1 if self._broker_lost else 5)  # whatever is still held expires
        if self._blocking is not None:
            self._blocking.close()

    def _wait_for_work(self, seconds: float) -> None:
        """Sleep until a marker says jobs are ready (or delayed jobs come due), or ``seconds``."""
        if seconds <= 0.001:
            return
        assert self._blocking is not None
        markers = [self.broker.lane_keys[lane].marker for lane in self.lanes]
        self._blocking.bzpopmin(markers, timeout=seconds)

    def _exchange(self, settlements: list[Settlement], want: int) -> Fetched:
        """Settle per lane, fetch up to ``want`` jobs across lanes (rotating which lane comes
        first, so that no lane starves)."""
        by_lane: dict[str, list[Settlement]] = {}
        for s in settlements:
            by_lane.setdefault(s.job.lane, []).append(s)
        first = self._rotation % len(self.lanes)
        fetched = Fetched()
        for lane in self.lanes[first:] + self.lanes[:first]:
            batch = by_lane.get(lane, [])
            fetch = want - len(fetched.deliveries)
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
                sent = {id(s) for s in batch}
                settlements[:] = [s for s in settlements if id(s) not in sent]  # done: never sent again
                self.locks.release(lane, [s.job.id for s in batch])
                for s, code in zip(batch, codes):
                    self._tally(s.job, s.outcome if code == 0 else Outcome.LOST_LOCK, s.reason)
            else:
                reply = self.broker.scripts.call(
                    "moveToActive", keys, now, [fetch, token, self.lock_duration_ms, self.id])
                due, jobs = reply[0], reply[1:]
            for i in range(0, len(jobs), 2):
                job_id = jobs[i].decode()
                job, bad = job_from_hash(job_id, pairs_to_dict(jobs[i + 1]), lane)
                self.locks.hold(lane, job_id, token)
                fetched.deliveries.append(Delivery(job, bad, (lane, token)))
            if due and (not fetched.next_due_ms or int(due) < fetched.next_due_ms):
                fetched.next_due_ms = int(due)
        self._rotation += 1
        return fetched

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

    def close(self) -> None:
        self.stop()
