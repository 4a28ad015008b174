"""The BullMQ-style worker: batch fetch and batch settle, over the one worker loop.

Delivery guarantee: at-least-once. A job taken by this worker sits in ``active`` under
``<id>:lock`` (our token, TTL ``lock_duration_ms``), which :mod:`.locks` renews every half lock
duration. If this process dies, the lock expires; the stalled check (run by every worker, at
most once per ``stalled_interval_ms`` per queue) then moves the job back to wait, so it runs
again: redelivery takes between half ``lock_duration_ms`` (a lock renewed just before the
death) and ``max(lock_duration_ms, 2 x stalled_interval_ms) + stalled_interval_ms`` (the job
needs its lock gone and a mark from an earlier check that a renewal did not clear; the reasoning
is in :class:`brokers.contract.CrashRedelivery`). After ``max_stalled_count`` such recoveries the
job is failed.

Throughput: the loop (:class:`brokers.worker_loop.PollingWorker`) takes up to ``concurrency``
jobs per round trip (moveToActive.lua), and each later round trip settles every job that
finished meanwhile and takes as many new ones (moveToFinished.lua). With concurrency 1 that
is one round trip per job, as in BullMQ. While jobs run and slots are free, a second
connection blocks on the queue's marker (as BullMQ's worker does), so new jobs are taken the
moment they are added, not at the next poll.

Errors: every Redis error (a dropped connection, a replica's READONLY after a failover, a
script error) is retried for ``reconnect_for_s`` seconds, then ends the run with
BrokerUnavailable saying why. A call whose reply was lost is sent again unchanged (same call
key), so it is answered from what it did the first time (see lua/include/queue.lua).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import redis
from redis.exceptions import RedisError

from ..contract import BrokerUnavailable, Handler, Hooks, Outcome
from ..dispatch import JobRunner, Settlement
from ..urls import redact
from ..worker_loop import Delivery, Fetched, PollingWorker
from .codec import job_from_hash, keep_arg, pairs_to_dict
from .connection import connect
from .keys import MARKER_DELAYED
from .locks import LockKeeper
from .scripts import Call, Calls

if TYPE_CHECKING:
    from .broker import BullMQRedisBroker

log = logging.getLogger(__name__)
MAX_IDLE_BLOCK_S = 1.0  # longest BZPOPMIN wait: bounds how long stop() takes when idle


@dataclass
class LaneCall:
    """One script call for one lane, kept until its reply arrived, to be sent again unchanged."""

    script: str
    now: int
    args: list[Any]
    token: str
    call: Call
    batch: list[Settlement]


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
    :param reconnect_for_s: how long Redis errors are retried before the run gives up.
    """

    transient_errors = (RedisError, BrokerUnavailable)
    busy_poll_s = 1.0  # the marker watch wakes the loop sooner when new jobs come

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
        self._calls = Calls(self.id)
        self._unanswered: dict[str, LaneCall] = {}  # lane -> call whose reply was lost
        self._rotation = 0
        self._blocking: redis.Redis | None = None
        self._watch: MarkerWatch | None = None
        self.locks = LockKeeper(broker, self.id, self.lanes, lock_duration_ms=lock_duration_ms,
                                stalled_interval_ms=stalled_interval_ms, max_stalled_count=max_stalled_count)

    def _where(self) -> str:
        return f"Redis at {redact(self.broker.url)}"

    @property
    def _markers(self) -> list[str]:
        return [self.broker.lane_keys[lane].marker for lane in self.lanes]

    # -------------------------------------------------------------------------- primitives
    def _begin(self) -> None:
        self._blocking = connect(self.broker.url, role="worker-block", socket_timeout=MAX_IDLE_BLOCK_S + 10,
                                 reconnect_for=self.reconnect_for_s)
        self._watch = MarkerWatch(self)
        self._watch.start()
        self.locks.start()

    def _release(self) -> None:
        self.locks.stop(wait_s=1 if self._broker_lost else 5)  # whatever is still held expires
        if self._watch is not None:
            self._watch.stop()
        if self._blocking is not None:
            self._blocking.close()

    def _watch_for_work(self, runner: JobRunner, on: bool) -> None:
        if self._watch is not None:
            self._watch.arm(runner if on else None)

    def _wait_for_work(self, seconds: float) -> None:
        """Sleep until a marker says jobs are ready (or delayed jobs come due), or ``seconds``."""
        if seconds <= 0.001:
            return
        assert self._blocking is not None
        self._blocking.bzpopmin(self._markers, timeout=seconds)

    def _exchange(self, settlements: list[Settlement], want: int) -> Fetched:
        """Settle per lane, fetch up to ``want`` jobs across lanes (rotating which lane comes
        first, so that no lane starves). A lane's call whose reply was lost goes first, unchanged."""
        by_lane: dict[str, list[Settlement]] = {}
        for s in settlements:
            by_lane.setdefault(s.job.lane, []).append(s)
        first = self._rotation % len(self.lanes)
        fetched = Fetched()
        for lane in self.lanes[first:] + self.lanes[:first]:
            keys = self.broker.lane_keys[lane]
            call = self._unanswered.get(lane)
            if call is None:
                call = self._new_call(lane, by_lane.get(lane, []), max(want - len(fetched.deliveries), 0))
                if call is None:
                    continue
                self._unanswered[lane] = call
            if call.batch:
                self.locks.settling(lane, [s.job.id for s in call.batch])
            reply = self.broker.scripts.call(call.script, keys, call.now, call.args, call=call.call)
            del self._unanswered[lane]
            self._calls.answered(call.call)
            if call.batch:
                codes, due, jobs = reply[0], reply[1], reply[2:]
                sent = {id(s) for s in call.batch}
                settlements[:] = [s for s in settlements if id(s) not in sent]  # done: never sent again
                self.locks.release(lane, [s.job.id for s in call.batch])
                for s, code in zip(call.batch, codes):
                    self._tally(s.job, s.outcome if code == 0 else Outcome.LOST_LOCK, s.reason)
            else:
                due, jobs = reply[0], reply[1:]
            for i in range(0, len(jobs), 2):
                job_id = jobs[i].decode()
                job, bad = job_from_hash(job_id, pairs_to_dict(jobs[i + 1]), lane)
                self.locks.hold(lane, job_id, call.token)
                fetched.deliveries.append(Delivery(job, bad, (lane, call.token)))
            if due and (not fetched.next_due_ms or int(due) < fetched.next_due_ms):
                fetched.next_due_ms = int(due)
        self._rotation += 1
        return fetched

    def _new_call(self, lane: str, batch: list[Settlement], fetch: int) -> LaneCall | None:
        if not batch and fetch <= 0:
            return None
        token = f"{self.id}:{next(self._tokens)}"
        call = self._calls.new(self.broker.lane_keys[lane])
        now = int(time.time() * 1000)
        if batch:
            args: list[Any] = [len(batch), fetch, token, self.lock_duration_ms, self.id]
            for s in batch:
                args += self._settle_args(s)
            return LaneCall("moveToFinished", now, args, token, call, list(batch))
        return LaneCall("moveToActive", now, [fetch, token, self.lock_duration_ms, self.id], token, call, [])

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


class MarkerWatch(threading.Thread):
    """Blocks on the lanes' markers while the worker runs jobs and has free slots, and wakes its
    loop when one says jobs are ready (or a delayed job is due), as BullMQ's worker blocks on
    the marker between jobs. A connection of its own: a blocking command holds it."""

    def __init__(self, worker: RedisWorker) -> None:
        super().__init__(daemon=True, name=f"{worker.id}-marker")
        self.worker = worker
        self._runner: JobRunner | None = None
        self._armed = threading.Event()
        self._done = threading.Event()
        self._client: redis.Redis | None = None

    def arm(self, runner: JobRunner | None) -> None:
        self._runner = runner
        if runner is None:
            self._armed.clear()
        else:
            self._armed.set()

    def stop(self) -> None:
        self._done.set()
        self._armed.set()
        self.join(timeout=MAX_IDLE_BLOCK_S + 2)
        if self._client is not None:
            self._client.close()

    def run(self) -> None:
        try:
            self._client = connect(self.worker.broker.url, role="worker-marker",
                                   socket_timeout=MAX_IDLE_BLOCK_S + 10, reconnect_for=1.0)
        except Exception as exc:  # noqa: BLE001 - without it the loop polls, as before: say so
            log.warning("worker %s: no marker watch (%s); polling instead", self.worker.id, exc)
            return
        while not self._done.is_set():
            if not self._armed.wait(0.5) or self._done.is_set():
                continue
            try:
                got = self._client.bzpopmin(self.worker._markers, timeout=MAX_IDLE_BLOCK_S)
            except RedisError:
                self._done.wait(0.2)
                continue
            if not got:
                continue
            _key, member, score = got
            if member.decode() == MARKER_DELAYED:  # a delayed job's due time: wake then, not now
                self._done.wait(max(min(score / 1000 - time.time(), MAX_IDLE_BLOCK_S), 0.0))
            runner = self._runner
            if runner is not None:
                runner.wake()
            else:  # disarmed meanwhile: put the marker back for the loop's own wait (or another worker)
                try:
                    self._client.zadd(_key, {member: score})
                except RedisError:
                    pass
