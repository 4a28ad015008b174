"""The one producer/consumer contract every adapter implements.

A reader who wants to know what "a broker" means in brokerbench reads this file only.

Words
-----
job        one unit of work: an id, a type (``name``), JSON ``data`` and options.
producer   publishes jobs; ``publish`` returns once the broker has accepted the job, in the
           sense the adapter's durability settings give "accepted" (see each adapter).
worker     takes jobs, runs a handler, and settles each job: *completed* when the handler
           returns, *retried* (possibly after a backoff delay) or *failed* (dead-lettered)
           when it raises.
lane       a named queue inside one broker. Routing maps each job type to a lane; a job type
           with no route goes to the ``default`` lane. A worker consumes from some lanes.

Guarantees every adapter gives (the contract tests prove them)
--------------------------------------------------------------
* At-least-once delivery: a job the producer saw accepted is run until it is settled, even if
  a worker dies mid-job or a connection drops; a job may therefore run more than once.
* A handler's return settles the job as completed; a raise retries it while attempts remain
  (with the job's backoff), then fails it with the exception text as its reason.
* Bad input never stops a worker: a payload that is not JSON or a job type with no handler is
  failed (dead-lettered) at once, with a reason, and the worker goes on.
* Order: jobs of one lane start in publish order when one worker with concurrency 1 consumes
  them and nothing is retried, delayed or prioritized. Nothing stronger is promised.

What differs between adapters is declared in :class:`Capabilities`, in prose as well as flags.
"""

from __future__ import annotations

import json
import math
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Sequence

DEFAULT_LANE = "default"
MAX_PRIORITY = 10
"""Priorities run from 1 (most urgent) to MAX_PRIORITY (least urgent), as in BullMQ; 0 means none."""


# --------------------------------------------------------------------------------------- errors


class BrokerError(Exception):
    """Base class of every error an adapter raises on purpose."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (refused, timed out, dropped and not back in time)."""


class AuthenticationFailed(BrokerUnavailable):
    """The broker answered but refused the credentials."""


class PublishRejected(BrokerError):
    """The broker refused a job (negative confirm, out of memory, queue full).

    ``job_ids`` lists the jobs that were NOT accepted; the caller still owns them.
    """

    def __init__(self, message: str, job_ids: Sequence[str] = ()):
        super().__init__(message)
        self.job_ids = list(job_ids)


class InvalidJob(ValueError):
    """A job cannot be published as given (not JSON-serialisable, bad option...)."""


class UnrecoverableError(Exception):
    """Raise from a handler to fail a job at once, skipping any remaining attempts."""


# ------------------------------------------------------------------------------------- options


class BackoffType(str, Enum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True)
class Backoff:
    """How long to wait before the next attempt of a failed job.

    fixed:       ``delay_ms`` every time.
    exponential: ``delay_ms * 2 ** (attempts_made - 1)``: 1x, 2x, 4x... (BullMQ's formula).
    """

    type: BackoffType = BackoffType.FIXED
    delay_ms: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", BackoffType(self.type))
        if not isinstance(self.delay_ms, int) or self.delay_ms < 0:
            raise InvalidJob(f"backoff delay_ms must be a non-negative integer, got {self.delay_ms!r}")

    def delay_for(self, attempts_made: int) -> int:
        """Delay in ms before the next attempt, after ``attempts_made`` failed attempts (>= 1)."""
        if self.type is BackoffType.FIXED:
            return self.delay_ms
        return int(round(math.pow(2, max(attempts_made, 1) - 1) * self.delay_ms))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.value, "delay": self.delay_ms}

    @classmethod
    def from_json(cls, raw: Any) -> "Backoff | None":
        """Accept BullMQ's forms: a number (fixed delay) or ``{"type": ..., "delay": ...}``."""
        if raw is None or raw == {} or raw is False:
            return None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return cls(BackoffType.FIXED, int(raw))
        if isinstance(raw, dict) and raw.get("type") in ("fixed", "exponential"):
            return cls(BackoffType(raw["type"]), int(raw.get("delay") or 0))
        raise InvalidJob(f"unsupported backoff {raw!r}: use a number or fixed/exponential")


Keep = bool | int
"""``remove_on_complete``/``remove_on_fail``: True removes a job as it finishes, False keeps
every finished job, n keeps only the newest n (BullMQ's removeOnComplete/removeOnFail)."""


@dataclass(frozen=True)
class JobOptions:
    """Per-job options. Defaults give one attempt, no delay, no priority.

    ``remove_on_complete`` defaults to True (keep no completed jobs), unlike BullMQ, which keeps
    every completed job unless told otherwise: RabbitMQ keeps none, so both start equal.
    """

    delay_ms: int = 0
    priority: int = 0
    attempts: int = 1
    backoff: Backoff | None = None
    job_id: str | None = None
    remove_on_complete: Keep = True
    remove_on_fail: Keep = False

    def __post_init__(self) -> None:
        if not isinstance(self.delay_ms, int) or self.delay_ms < 0:
            raise InvalidJob(f"delay_ms must be a non-negative integer, got {self.delay_ms!r}")
        if not isinstance(self.priority, int) or not 0 <= self.priority <= MAX_PRIORITY:
            raise InvalidJob(f"priority must be an integer 0..{MAX_PRIORITY}, got {self.priority!r}")
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise InvalidJob(f"attempts must be an integer >= 1, got {self.attempts!r}")
        if self.job_id is not None and (not isinstance(self.job_id, str) or not self.job_id
                                        or ":" in self.job_id or self.job_id.isdigit()):
            raise InvalidJob("job_id must be a non-empty string without ':' and not all digits "
                             f"(BullMQ reserves numeric ids for its counter), got {self.job_id!r}")
        for name in ("remove_on_complete", "remove_on_fail"):
            value = getattr(self, name)
            if not isinstance(value, (bool, int)) or (not isinstance(value, bool) and value < 0):
                raise InvalidJob(f"{name} must be a bool or a non-negative integer, got {value!r}")


DEFAULT_OPTIONS = JobOptions()  # frozen: one shared instance serves every job without options


@dataclass(frozen=True)
class JobSpec:
    """A job to publish: its type, its JSON data and its options."""

    name: str
    data: Any
    options: JobOptions = DEFAULT_OPTIONS


# ------------------------------------------------------------------------------------------ jobs


@dataclass
class Job:
    """A job as a worker sees it.

    ``attempts_made`` counts finished failed attempts before this run (0 on the first run).
    ``deliveries`` counts how many times the job was handed to a worker, this time included;
    it is larger than ``attempts_made + 1`` when a worker died or stalled with the job.
    """

    id: str
    name: str
    data: Any
    options: JobOptions
    attempts_made: int = 0
    deliveries: int = 1
    created_ms: int = 0
    lane: str = DEFAULT_LANE

    @property
    def redelivered(self) -> bool:
        return self.deliveries > self.attempts_made + 1


class Outcome(str, Enum):
    COMPLETED = "completed"
    RETRIED = "retried"      # failed, another attempt is scheduled (maybe after a backoff)
    FAILED = "failed"        # failed for good: in the failed set / dead-letter queue
    LOST_LOCK = "lost_lock"  # finished, but another worker had taken the job over meanwhile


Handler = Callable[[Job], Any]
"""Runs one job. Returns a JSON-serialisable result, or raises to fail the attempt."""


class Hooks:
    """Cross-cutting observers of a worker (timing, logging). Every method is optional.

    Hooks run on the worker's threads; they must be quick and must not raise.
    """

    def job_started(self, job: Job) -> None:  # noqa: D401 - hook
        """Called on the handler's thread just before the handler runs."""

    def job_settled(self, job: Job, outcome: Outcome, detail: str | None) -> None:
        """Called once the outcome is handed to the broker: on Redis when the settling script
        ran; on RabbitMQ when a retry or dead-letter copy is confirmed and the ack is queued
        (acks leave in batches, see the AMQP worker)."""

    def connection_lost(self, error: BaseException) -> None:
        """Called when the worker lost its broker connection and starts reconnecting."""


@dataclass
class WorkerReport:
    """What one worker did, counted on the client side."""

    completed: int = 0
    retried: int = 0
    failed: int = 0
    lost_lock: int = 0
    redelivered: int = 0
    reconnects: int = 0

    @property
    def settled(self) -> int:
        return self.completed + self.retried + self.failed + self.lost_lock


@dataclass
class QueueStats:
    """Counts the broker itself can report. ``None`` means this broker cannot tell.

    waiting   ready to run (including prioritized)
    active    handed to a worker, not settled
    delayed   waiting for a delay or a backoff to pass
    completed finished jobs the broker still keeps (RabbitMQ keeps none)
    failed    failed jobs kept: BullMQ's failed set, RabbitMQ's dead-letter queue
    """

    waiting: int | None = 0
    active: int | None = 0
    delayed: int | None = 0
    completed: int | None = 0
    failed: int | None = 0

    def as_dict(self) -> dict[str, int | None]:
        return {"waiting": self.waiting, "active": self.active, "delayed": self.delayed,
                "completed": self.completed, "failed": self.failed}


@dataclass
class FailedJob:
    """A job that failed for good, as the broker keeps it (failed set / dead-letter queue)."""

    id: str
    name: str
    reason: str
    attempts_made: int
    data: Any = None


class Support(str, Enum):
    NATIVE = "native"        # the broker does it itself
    EMULATED = "emulated"    # built on broker primitives by the adapter, the usual way
    CLIENT = "client"        # done in the client library (as BullMQ does on Redis)
    NONE = "none"


@dataclass(frozen=True)
class Feature:
    support: Support
    how: str


@dataclass(frozen=True)
class CrashRedelivery:
    """When the jobs of a worker that died (SIGKILL, lost host) run again, as a rule a scenario
    can turn into an expectation.

    ``trigger`` is "connection-close" (the broker returns unsettled jobs the moment the worker's
    connection closes), "lock-expiry" (the job's lock must expire, then a periodic check hands
    it out again) or "none" (nothing outlives the worker's process).
    For "lock-expiry", the bound is lock duration + two check intervals: a check may run just
    before the lock expires, and the next one comes an interval later; the worker options
    named by ``lock_option`` and ``interval_option`` (in ms) give the two, with defaults.
    """

    trigger: str
    lock_option: str = ""
    interval_option: str = ""
    default_lock_ms: int = 0
    default_interval_ms: int = 0
    close_bound_s: float = 1.0

    def bound_s(self, worker_options: Mapping[str, Any] | None = None) -> float | None:
        """Longest expected time, in seconds, from the worker's death to its jobs running again."""
        options = worker_options or {}
        if self.trigger == "connection-close":
            return self.close_bound_s
        if self.trigger == "lock-expiry":
            lock = options.get(self.lock_option, self.default_lock_ms)
            interval = options.get(self.interval_option, self.default_interval_ms)
            return (lock + 2 * interval) / 1000
        return None

    def describe(self, worker_options: Mapping[str, Any] | None = None) -> str:
        """The rule in words, with its bound for these options."""
        bound = self.bound_s(worker_options)
        if self.trigger == "connection-close":
            return f"jobs back as soon as the connection closes (< {bound:g} s)"
        if self.trigger == "lock-expiry":
            return f"jobs back within lock + 2 x stalled interval ({bound:.1f} s)"
        return "nothing outlives the worker's process"


@dataclass(frozen=True)
class Capabilities:
    """What a broker does natively, what the adapter builds, and what it guarantees."""

    delivery: str
    ordering: str
    durability: str
    delay: Feature
    priority: Feature
    retries: Feature
    dead_letter: Feature
    routing: Feature
    batching: Feature
    redelivery_after_crash: Feature
    stats: frozenset[str]
    crash_redelivery: CrashRedelivery = CrashRedelivery("none")

    def table(self) -> dict[str, str]:
        rows = {"delivery": self.delivery, "ordering": self.ordering, "durability": self.durability}
        for name in ("delay", "priority", "retries", "dead_letter", "routing", "batching",
                     "redelivery_after_crash"):
            feature: Feature = getattr(self, name)
            rows[name] = f"{feature.support.value}: {feature.how}"
        return rows


# ------------------------------------------------------------------------------------ interfaces


class Producer(ABC):
    """Publishes jobs. Not thread-safe: use one producer per thread.

    ``on_accepted``, if set, is called with the ids of jobs as the broker accepts them: during
    ``publish`` for brokers that answer each call, later (on a confirm) for windowed confirms.
    """

    on_accepted: Callable[[list[str]], None] | None = None

    def _accepted(self, ids: list[str]) -> None:
        if self.on_accepted is not None and ids:
            self.on_accepted(ids)

    @abstractmethod
    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str:
        """Publish one job; return its id once the broker accepted it."""

    @abstractmethod
    def publish_many(self, jobs: Iterable[JobSpec]) -> list[str]:
        """Publish several jobs in as few round trips as the broker allows; ids in input order."""

    def flush(self) -> None:
        """Wait until every job published so far is accepted (no-op where publish already waits)."""

    def idle(self, seconds: float) -> None:
        """Wait ``seconds`` between publishes while still reading the broker's replies
        (confirms, heartbeats). A plain sleep where there is nothing to read."""
        time.sleep(max(seconds, 0.0))

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Worker(ABC):
    """Runs handlers on jobs. ``run`` blocks; ``stop`` may be called from any thread.

    The rules of ``run`` (when to stop, how many jobs to take, counting, hooks) are written once,
    in :mod:`brokers.worker_loop`; an adapter supplies how to fetch and settle jobs.
    """

    hooks: tuple[Hooks, ...] = ()

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.report = WorkerReport()

    def _received(self, job: Job) -> None:
        """Count a job handed to this worker (a redelivery is counted as one)."""
        if job.redelivered:
            self.report.redelivered += 1

    def _tally(self, job: Job, outcome: Outcome, detail: str | None) -> None:
        """Count a settlement the broker recorded, and tell the hooks."""
        setattr(self.report, outcome.value, getattr(self.report, outcome.value) + 1)
        for hook in self.hooks:
            hook.job_settled(job, outcome, detail)

    def _connection_lost(self, error: BaseException) -> None:
        """Count a lost connection, and tell the hooks."""
        self.report.reconnects += 1
        for hook in self.hooks:
            hook.connection_lost(error)

    @abstractmethod
    def run(self, *, max_jobs: int | None = None, idle_timeout: float | None = None,
            timeout: float | None = None) -> WorkerReport:
        """Process jobs until ``stop()``, ``max_jobs`` settled, ``idle_timeout`` seconds with
        nothing to do, or ``timeout`` seconds in all. In-flight jobs are settled before it returns.
        """

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start_in_thread(self, **run_kwargs: Any) -> threading.Thread:
        """Run in a daemon thread (for tests and notebooks); ``stop()`` then ``join()`` it."""
        thread = threading.Thread(target=self.run, kwargs=run_kwargs, daemon=True,
                                  name=f"{type(self).__name__}-run")
        thread.start()
        return thread

    @abstractmethod
    def close(self) -> None: ...


class Broker(ABC):
    """One broker holding one logical queue, split into lanes by job type.

    ``routes`` maps job type -> lane; unrouted types go to :data:`DEFAULT_LANE`.
    """

    kind: str = ""
    capabilities: Capabilities  # each adapter class sets it: what it does and guarantees

    def __init__(self, queue: str, routes: Mapping[str, str] | None = None) -> None:
        if not queue or not all(c.isalnum() or c in "-_." for c in queue):
            raise ValueError(f"queue name must be non-empty and use only letters, digits, '-_.', got {queue!r}")
        self.queue = queue
        self.routes = dict(routes or {})
        for lane in self.routes.values():
            if not lane or not all(c.isalnum() or c in "-_" for c in lane):
                raise ValueError(f"lane names use only letters, digits, '-_', got {lane!r}")

    @property
    def lanes(self) -> list[str]:
        return [DEFAULT_LANE] + sorted(set(self.routes.values()) - {DEFAULT_LANE})

    def lane_for(self, job_name: str) -> str:
        return self.routes.get(job_name, DEFAULT_LANE)

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def worker(self, handlers: Mapping[str, Handler] | Handler, *, concurrency: int = 1,
               lanes: Sequence[str] | None = None, hooks: Sequence[Hooks] = (),
               **options: Any) -> Worker:
        """A worker for ``lanes`` (default: all). ``handlers`` maps job type -> handler, or is
        one handler for every type. ``concurrency`` jobs run at once, on threads when > 1.
        """

    @abstractmethod
    def stats(self) -> QueueStats: ...

    @abstractmethod
    def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        """Up to ``limit`` failed jobs with their reasons, oldest first; leaves them in place."""

    @abstractmethod
    def purge(self) -> None:
        """Remove every job and every key/queue of this logical queue."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Versions and settings of the broker as connected, for results files (no secrets)."""
        return {"kind": self.kind, "queue": self.queue}

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- shared helpers


JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""The one JSON encoder of the adapters: compact, strict (no NaN). Built once: json.dumps with
options builds a new encoder on every call, which costs more than encoding a small job."""


def encode_data(data: Any) -> str:
    """JSON-encode job data, or raise :class:`InvalidJob` saying why it cannot be."""
    try:
        return JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"job data must be JSON-serialisable: {exc}") from None


def check_job_name(name: Any) -> str:
    """A job type must be a non-empty string of at most 255 bytes (AMQP's limit for a type)."""
    if not isinstance(name, str) or not name or len(name.encode()) > 255:
        raise InvalidJob(f"job name must be a non-empty string of at most 255 bytes, got {name!r}")
    return name


def resolve_handler(handlers: Mapping[str, Handler] | Handler, name: str) -> Handler | None:
    if callable(handlers):
        return handlers  # type: ignore[return-value]
    return handlers.get(name)
