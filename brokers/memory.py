"""An in-process broker behind the same contract: no network, no persistence, one process.

What it is for: measuring the harness's own ceiling (how fast the benchmark code itself can
push jobs, with the broker cost near zero) and fast tests of the harness. It keeps the
contract's semantics (lanes, JSON payloads, delays, priorities, retries with backoff, failed
jobs, at-least-once) but not across processes: producers and workers must share the object.

It can also misbehave on purpose (:class:`MemoryFaults`): drop accepted jobs or deliver some
twice, so the harness's lost/duplicate accounting can be tested against known answers.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .contract import (
    MAX_JOB_BYTES,
    Broker,
    Capabilities,
    FailedJob,
    Fate,
    Feature,
    Handler,
    Hooks,
    InvalidJob,
    Job,
    JobOptions,
    JobSpec,
    Outcome,
    Producer,
    PublishFailed,
    PublishInDoubt,
    PublishRejected,
    QueueStats,
    Support,
    check_job_name,
    encode_data,
)
from .dispatch import Settlement
from .registry import PROTOCOL_IN_PROCESS, Driver
from .worker_loop import Delivery, Fetched, PollingWorker

KIND = "memory"
INLINE_BATCH = 64  # jobs a concurrency-1 worker takes at once

CAPABILITIES = Capabilities(
    delivery="at-least-once inside one process; nothing survives the process",
    ordering="FIFO per lane; prioritized jobs after unprioritized ones, lowest number first",
    durability="none: memory of one process",
    delay=Feature(Support.NATIVE, "a heap of due times"),
    priority=Feature(Support.NATIVE, "a heap per lane"),
    retries=Feature(Support.NATIVE, "back to the lane, or to the delay heap for the backoff"),
    dead_letter=Feature(Support.NATIVE, "a list of failed jobs"),
    routing=Feature(Support.NATIVE, "job type -> lane"),
    batching=Feature(Support.NATIVE, "workers take up to their free slots at once"),
    redelivery_after_crash=Feature(Support.NONE, "no crash to survive: one process"),
    stats=frozenset({"waiting", "active", "delayed", "completed", "failed"}),
    repeated_id=Feature(Support.NATIVE, "as BullMQ: a job id still held is not added again; its id is "
                                        "returned and its data kept"),
)


@dataclass
class MemoryFaults:
    """Planned misbehaviour, by 0-based counts: publishes to drop after accepting them,
    deliveries to make a second time, retries to lose (a retry copy that never arrives), one
    publish call to stall for ``stall_s`` seconds (the call that carries publish number
    ``stall_at``), as a broker pause would, and publish calls to refuse half of (``refuse_calls``:
    the first half of the call is accepted, the rest refused with PublishRejected); and, with
    ``confirm_on_idle``, acceptances told only when the producer idles or flushes, as a
    windowed-confirm producer learns of its confirms only when it reads its socket; and publish
    calls to nack later (``nack_calls``: the call returns its ids, nothing is kept, and the next
    idle or flush raises PublishRejected with them, as a basic.nack read after the call did);
    and publish calls left in doubt (``doubt_calls``: the first half of the call is kept and
    will run, the rest is not, and the call raises PublishInDoubt naming all of them, as a
    reply lost after sending would)."""

    drop: frozenset[int] = frozenset()
    duplicate: frozenset[int] = frozenset()
    stall_at: int | None = None
    stall_s: float = 0.0
    drop_retry: frozenset[int] = frozenset()
    refuse_calls: frozenset[int] = frozenset()
    confirm_on_idle: bool = False  # acceptance told only in idle()/flush(), as windowed confirms are read
    nack_calls: frozenset[int] = frozenset()
    doubt_calls: frozenset[int] = frozenset()

    @classmethod
    def coerce(cls, raw: "MemoryFaults | dict[str, Any] | None") -> "MemoryFaults":
        """From a scenario file's dict: {"drop": [..], "duplicate": [..], "stall_at": n, "stall_s": s,
        "drop_retry": [..], "refuse_calls": [..], "confirm_on_idle": bool, "nack_calls": [..],
        "doubt_calls": [..]}."""
        if raw is None or isinstance(raw, MemoryFaults):
            return raw or cls()
        return cls(frozenset(raw.get("drop", ())), frozenset(raw.get("duplicate", ())), raw.get("stall_at"),
                   float(raw.get("stall_s", 0.0)), frozenset(raw.get("drop_retry", ())),
                   frozenset(raw.get("refuse_calls", ())), bool(raw.get("confirm_on_idle", False)),
                   frozenset(raw.get("nack_calls", ())), frozenset(raw.get("doubt_calls", ())))


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    job_id: str = field(compare=False)


class MemoryBroker(Broker):
    """The in-process broker (see the module's text).

    :param url: ignored but kept, so every adapter is built the same way (``memory://``).
    :param queue: the logical queue's name.
    :param routes: job type -> lane.
    :param faults: planned misbehaviour (:class:`MemoryFaults` or its dict form).
    :param max_job_bytes: largest job data (JSON bytes) accepted, as the network adapters.
    """

    kind = KIND
    capabilities = CAPABILITIES
    #: Options the harness gives every kind, which mean nothing in one process: taken and
    #: ignored. Any other key is refused (:meth:`brokers.contract.Broker.option_names`).
    IGNORED_OPTIONS = ("reconnect_for_s", "connect_timeout", "lock_duration_ms", "stalled_interval_ms",
                       "max_stalled_count", "prefetch")

    @classmethod
    def option_names(cls) -> frozenset[str]:
        return frozenset({"queue", "routes", "faults", "max_job_bytes", *cls.IGNORED_OPTIONS})

    def __init__(self, url: str = "memory://", queue: str = "brokerbench",
                 routes: Mapping[str, str] | None = None, *, faults: MemoryFaults | dict[str, Any] | None = None,
                 max_job_bytes: int | None = MAX_JOB_BYTES, **_ignored: Any) -> None:
        super().__init__(queue, routes)
        self.url = url
        self.max_job_bytes = max_job_bytes
        self.faults = MemoryFaults.coerce(faults)
        self._cv = threading.Condition()
        self._jobs: dict[str, tuple[str, bytes, JobOptions, int, int]] = {}  # id -> name, data, opts, made, created
        self._plain: dict[str, deque[str]] = {lane: deque() for lane in self.lanes}   # no priority: FIFO
        self._ready: dict[str, list[_Entry]] = {lane: [] for lane in self.lanes}       # prioritized
        self._delayed: list[tuple[float, int, str]] = []
        self._active: set[str] = set()
        self._completed = 0
        self._failed: list[FailedJob] = []
        self._seq = itertools.count()
        self._published = itertools.count()
        self._published_count = 0
        self._calls = itertools.count()
        self.nack_pending: list[str] = []  # faults.nack_calls: ids sent, to be nacked at the next flush
        self._retries = itertools.count()
        self._delivered = itertools.count()
        self._redeliver: deque[tuple[str, tuple[str, bytes, JobOptions, int, int]]] = deque()

    # --------------------------------------------------------------------------- internals
    def _push_ready(self, job_id: str) -> None:
        name, _, options, _, _ = self._jobs[job_id]
        if options.priority:
            heapq.heappush(self._ready[self.lane_for(name)], _Entry((options.priority, next(self._seq)), job_id))
        else:  # no priority runs first, as in BullMQ
            self._plain[self.lane_for(name)].append(job_id)

    def _promote_due(self) -> float | None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job_id = heapq.heappop(self._delayed)
            self._push_ready(job_id)
        return self._delayed[0][0] if self._delayed else None

    def add(self, specs: Iterable[JobSpec]) -> list[str]:
        # Encode outside the lock: the lock only guards the queue structures.
        encoded = []
        for spec in specs:
            if not isinstance(spec, JobSpec):
                raise InvalidJob(f"publish_many takes JobSpec items, got {type(spec).__name__}")
            encoded.append((check_job_name(spec.name), encode_data(spec.data, self.max_job_bytes).encode(),
                            spec.options))
        now_ms = int(time.time() * 1000)
        ids = []
        stall = self.faults.stall_at
        if stall is not None and self._published_count <= stall < self._published_count + len(encoded):
            time.sleep(self.faults.stall_s)
        self._published_count += len(encoded)
        call = next(self._calls)
        if call in self.faults.nack_calls:
            ids = [options.job_id or f"m{next(self._seq)}" for _name, _data, options in encoded]
            self.nack_pending += ids
            return ids
        refused, doubt = call in self.faults.refuse_calls, call in self.faults.doubt_calls
        everything = encoded
        if refused or doubt:
            encoded, cut = encoded[:len(encoded) // 2], len(encoded) - len(encoded) // 2
        with self._cv:
            for name, data, options in encoded:
                job_id = options.job_id or f"m{next(self._seq)}"
                ids.append(job_id)
                if next(self._published) in self.faults.drop:
                    continue  # accepted, then lost: what the harness must notice
                if options.job_id and job_id in self._jobs:
                    continue  # a job id still held is not added again (BullMQ's rule): capabilities.repeated_id
                self._jobs[job_id] = (name, data, options, 0, now_ms)
                if options.delay_ms:
                    heapq.heappush(self._delayed, (time.monotonic() + options.delay_ms / 1000,
                                                   next(self._seq), job_id))
                else:
                    self._push_ready(job_id)
            self._cv.notify_all()
        if refused:
            raise PublishRejected(f"refused {cut} job(s) of this call (planned fault)", [], ids + [None] * cut)
        if doubt:
            doubtful = ids + [options.job_id or f"m{next(self._seq)}" for _n, _d, options in everything[len(ids):]]
            raise PublishInDoubt(f"{len(doubtful)} job(s) of this call in doubt (planned fault: {len(ids)} kept)",
                                 [], [None] * len(doubtful), in_doubt=doubtful, fates=[Fate.IN_DOUBT] * len(doubtful))
        return ids

    def add_raw(self, name: str, raw: bytes) -> str:
        """Add a job whose payload bytes are given as is (maybe not JSON): for bad-input tests."""
        with self._cv:
            job_id = f"raw{next(self._seq)}"
            self._jobs[job_id] = (name, raw, JobOptions(attempts=3), 0, int(time.time() * 1000))
            self._push_ready(job_id)
            self._cv.notify_all()
        return job_id

    def wait_for_work(self, lanes: Sequence[str], seconds: float) -> None:
        """Sleep until a job is ready in one of ``lanes`` (or a delayed one comes due), or ``seconds``."""
        with self._cv:
            due = self._promote_due()
            if any(self._ready[lane] or self._plain[lane] for lane in lanes) or self._redeliver or seconds <= 0:
                return
            self._cv.wait(seconds if due is None else min(seconds, max(due - time.monotonic(), 0)))

    def take(self, lanes: Sequence[str], count: int, wait: float) -> list[tuple[Job, str | None]]:
        picked: list[tuple[str, tuple[str, bytes, JobOptions, int, int], bool]] = []
        with self._cv:
            due = self._promote_due()
            if not any(self._ready[lane] or self._plain[lane] for lane in lanes) and not self._redeliver \
                    and wait > 0:
                timeout = wait if due is None else min(wait, max(due - time.monotonic(), 0))
                self._cv.wait(timeout)
                self._promote_due()
            while len(picked) < count and self._redeliver:
                job_id, snapshot = self._redeliver.popleft()
                picked.append((job_id, snapshot, True))
            for lane in lanes:
                plain, heap = self._plain[lane], self._ready[lane]
                while (plain or heap) and len(picked) < count:
                    job_id = plain.popleft() if plain else heapq.heappop(heap).job_id
                    self._active.add(job_id)
                    stored = self._jobs[job_id]
                    if next(self._delivered) in self.faults.duplicate:
                        self._redeliver.append((job_id, stored))
                    picked.append((job_id, stored, False))
        return [self._job(job_id, stored, again) for job_id, stored, again in picked]  # decode unlocked

    def _job(self, job_id: str, stored: tuple[str, bytes, JobOptions, int, int],
             redelivered: bool = False) -> tuple[Job, str | None]:
        name, data, options, made, created = stored
        job = Job(job_id, name, None, options, attempts_made=made, deliveries=made + 1 + redelivered,
                  created_ms=created, lane=self.lane_for(name))
        try:
            job.data = json.loads(data)
        except ValueError as exc:
            return job, f"malformed payload: not JSON ({exc})"
        return job, None

    def settle(self, settlements: list[Settlement]) -> list[Outcome]:
        """Record outcomes, all under one lock."""
        outcomes = []
        with self._cv:
            for s in settlements:
                outcomes.append(self._settle_one(s))
            self._cv.notify_all()
        return outcomes

    def _settle_one(self, s: Settlement) -> Outcome:
        job_id = s.job.id
        if job_id not in self._jobs:
            return Outcome.LOST_LOCK  # a duplicate delivery of a job already settled
        name, data, options, made, created = self._jobs[job_id]
        self._active.discard(job_id)
        if s.outcome is Outcome.COMPLETED:
            self._completed += 1
            del self._jobs[job_id]
        elif s.outcome is Outcome.FAILED:
            malformed = bool(s.reason and s.reason.startswith("malformed"))
            self._failed.append(FailedJob(job_id, name, s.reason or "", made + 1,
                                          None if malformed else json.loads(data)))
            del self._jobs[job_id]
        else:
            self._jobs[job_id] = (name, data, options, made + 1, created)
            if next(self._retries) in self.faults.drop_retry:
                del self._jobs[job_id]  # the retry copy never arrives: the harness must see a loss
                return s.outcome
            if s.delay_ms:
                heapq.heappush(self._delayed, (time.monotonic() + s.delay_ms / 1000, next(self._seq), job_id))
            else:
                self._push_ready(job_id)
        return s.outcome

    # --------------------------------------------------------------------------- contract
    def producer(self) -> "MemoryProducer":
        return MemoryProducer(self)

    def worker(self, handlers: Mapping[str, Handler] | Handler, *, concurrency: int = 1,
               lanes: Sequence[str] | None = None, hooks: Sequence[Hooks] = (), **_options: Any) -> "MemoryWorker":
        return MemoryWorker(self, handlers, concurrency, list(lanes or self.lanes), hooks)

    def stats(self) -> QueueStats:
        with self._cv:
            return QueueStats(waiting=sum(len(h) for h in self._ready.values())
                              + sum(len(q) for q in self._plain.values()) + len(self._redeliver),
                              active=len(self._active), delayed=len(self._delayed),
                              completed=self._completed, failed=len(self._failed))

    def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        with self._cv:
            return list(self._failed[:limit])

    def purge(self) -> None:
        with self._cv:
            self._jobs.clear()
            for heap in self._ready.values():
                heap.clear()
            for plain in self._plain.values():
                plain.clear()
            self._delayed.clear()
            self._active.clear()
            self._redeliver.clear()
            self._failed.clear()
            self._completed = 0

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "queue": self.queue, "lanes": self.lanes, "version": "in-process"}

    def close(self) -> None:
        pass


class MemoryProducer(Producer):
    """Adds jobs to the in-process broker; ``publish`` returns once they are in its memory.

    :param broker: the in-process broker (shared with the workers).
    """

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._untold: list[str] = []  # confirm_on_idle: accepted, not yet told

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str:
        if options is not None and not isinstance(options, JobOptions):
            raise InvalidJob(f"options must be JobOptions, got {type(options).__name__}")
        return self.publish_many([JobSpec(name, data, options or JobOptions())])[0]

    def publish_many(self, jobs: Iterable[JobSpec]) -> list[str]:
        try:
            ids = self._broker.add(jobs)
        except PublishFailed as exc:
            self._tell([job_id for job_id in exc.accepted or () if job_id is not None])
            raise
        self._tell(ids)
        return ids

    def _tell(self, ids: list[str]) -> None:
        if self._broker.nack_pending:
            ids = [job_id for job_id in ids if job_id not in self._broker.nack_pending]
        if self._broker.faults.confirm_on_idle:
            self._untold += ids
        else:
            self._accepted(ids)

    def idle(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))
        self.flush()

    def flush(self) -> None:
        untold, self._untold = self._untold, []
        self._accepted(untold)
        nacked, self._broker.nack_pending = self._broker.nack_pending, []
        if nacked:
            raise PublishRejected(f"refused {len(nacked)} job(s) after the call (planned nack)", nacked)

    def close(self) -> None:
        self.flush()  # a planned late nack is told here at the latest, as the AMQP producer does


class MemoryWorker(PollingWorker):
    """A worker of the in-process adapter, over the one worker loop.

    :param broker: the in-process broker (shared by its producers and workers).
    :param handlers: job type -> handler, or one handler for every type.
    :param concurrency: jobs run at once (threads when > 1; with 1, up to ``INLINE_BATCH``
        jobs are taken at once and run one after the other, like a prefetch window).
    :param lanes: lanes to consume (default: all).
    :param hooks: observers of starts and settlements.
    """

    inline_batch = INLINE_BATCH
    busy_poll_s = 0.005
    idle_block_s = 0.05

    def __init__(self, broker: MemoryBroker, handlers: Mapping[str, Handler] | Handler, concurrency: int,
                 lanes: list[str], hooks: Sequence[Hooks]) -> None:
        super().__init__(handlers, concurrency)
        unknown = set(lanes) - set(broker.lanes)
        if unknown:
            raise ValueError(f"unknown lanes {sorted(unknown)}; this broker has {broker.lanes}")
        self.broker, self.lanes, self.hooks = broker, lanes, tuple(hooks)

    def _where(self) -> str:
        return "the in-process broker"

    def _exchange(self, settlements: list[Settlement], want: int) -> Fetched:
        if settlements:
            done, settlements[:] = list(settlements), []
            for s, outcome in zip(done, self.broker.settle(done), strict=True):
                self._tally(s.job, outcome, s.reason)
        taken = self.broker.take(self.lanes, want, 0.0) if want > 0 else []
        return Fetched([Delivery(job, bad, None) for job, bad in taken])

    def _wait_for_work(self, seconds: float) -> None:
        self.broker.wait_for_work(self.lanes, seconds)

    def close(self) -> None:
        self.stop()


class MemoryInstance:
    """The "private instance" of the in-process adapter: nothing to start, nothing to kill.

    It lets code that asks every kind for a private broker (fault scenarios) run on this one
    too; scenarios that need a process to kill skip kinds that cannot crash.
    """

    def __init__(self, config: Mapping[str, str] | None = None) -> None:
        self.config = dict(config or {})

    @classmethod
    def binary(cls) -> str | None:
        return "in-process"

    @property
    def url(self) -> str:
        return "memory://"

    @property
    def pid(self) -> int | None:
        return os.getpid()

    def start(self, timeout: float = 0.0) -> "MemoryInstance":
        return self

    def kill(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def cleanup(self) -> None:
        pass


def _inject_raw(broker: Broker, name: str, raw: bytes) -> str:
    return broker.add_raw(name, raw)  # type: ignore[attr-defined]


DRIVER = Driver(
    kind=KIND,
    label="in-process (memory)",
    adapter_path="brokers.memory:MemoryBroker",
    protocol=PROTOCOL_IN_PROCESS,
    compared=False,
    in_process=True,
    default_url="memory://",
    server_path="brokers.memory:MemoryInstance",
    server_pid=lambda url: os.getpid(),
    inject_raw=_inject_raw,
    colour="#009E73",
    marker="^",
)
