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
* Every job handed to ``publish`` ends in one of three outcomes (:class:`Fate`): *accepted*
  (the call returned its id, or ``on_accepted`` named it), *refused* (the broker certainly does
  not hold it: the caller owns it) or *in doubt* (it may hold it: the producer cannot know). A
  job a broker could not take (too big, a delay out of range, a name or id the broker cannot
  carry, data JSON cannot hold) raises InvalidJob before anything is sent; a refusal raises
  PublishRejected; a timeout after sending, replicas short of a WAIT or a connection lost before
  the reply raises PublishInDoubt (UnavailableInDoubt when the broker is also gone); an
  unreachable broker that was sent nothing raises BrokerUnavailable. The producer stays usable
  after each. See :class:`PublishFailed` for what a caller does with each.
* A repeated custom ``job_id``: what a second publish with an id the broker already holds does
  is each adapter's ``capabilities.repeated_id`` (BullMQ-style Redis: nothing is added and the
  existing job's id is returned; RabbitMQ: a second message). Resending a job in doubt with the
  same custom id is therefore safe on Redis while the job exists, and needs an idempotent
  handler on RabbitMQ.
* Order: jobs of one lane start in publish order when one worker with concurrency 1 consumes
  them and nothing is retried, delayed or prioritized. Nothing stronger is promised.

What differs between adapters is declared in :class:`Capabilities`, in prose as well as flags.
"""

from __future__ import annotations

import json
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Sequence

DEFAULT_LANE = "default"
MAX_PRIORITY = 10
"""Priorities run from 1 (most urgent) to MAX_PRIORITY (least urgent), as in BullMQ; 0 means none."""

MAX_DELAY_MS = 2**32 - 16
"""The longest delay or backoff, in ms (about 49.7 days): what the AMQP adapter's bounded delay
topology (binary levels of 16 ms to 2^31 ms) holds, just under RabbitMQ's largest message TTL
(2^32 - 1 ms). BullMQ sets no limit of its own, so the Redis adapter keeps this one too and both
accept the same jobs. Exponential backoffs that would grow past it are capped at it."""

MAX_JOB_BYTES = 128 * 1024 * 1024
"""The default largest job an adapter accepts, measured as its data's JSON text in bytes:
RabbitMQ's default ``max_message_size`` (128 MiB). Each network adapter takes ``max_job_bytes``
to change it (None: no check of ours; the broker's own limit then applies)."""

MAX_NAME_BYTES = 255
"""Longest job type and job id, in UTF-8 bytes: AMQP carries both as short strings."""

MAX_DEPTH = 512
"""Deepest nesting of lists and objects in job data (JSON parsers' recursion has limits too:
a job any worker could not decode is refused at publish instead)."""

MAX_COUNT_OPTION = 2**31 - 1
"""Largest ``attempts`` and ``remove_on_*`` count (a signed 32-bit integer, as AMQP headers carry)."""


# --------------------------------------------------------------------------------------- errors


class BrokerError(Exception):
    """Base class of every error an adapter raises on purpose."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (refused, timed out, dropped and not back in time)."""


class AuthenticationFailed(BrokerUnavailable):
    """The broker answered but refused the credentials."""


class Fate(str, Enum):
    """What became of one job of a publish call that raised :class:`PublishFailed`."""

    ACCEPTED = "accepted"  # the broker holds it, or the producer keeps it in flight (windowed
    #                        confirms: ``on_accepted`` or a later error says which)
    REFUSED = "refused"    # the broker certainly does not hold it (refused, or never sent)
    IN_DOUBT = "in_doubt"  # it may hold it: sent, and no answer the producer can trust came back


class PublishFailed(BrokerError):
    """Not every job of a publish call (or of earlier calls still in flight) was accepted.

    Raised as :class:`PublishRejected` when every job it names is certainly not held, and as
    :class:`PublishInDoubt` when the fate of some is unknown. Fields:

    ``job_ids``  refused: jobs the broker certainly does not hold. The caller owns them; the
                 producer never sends them again. They may include jobs of earlier calls still
                 awaiting their confirm.
    ``in_doubt`` ids of jobs whose fate is unknown (of this call or earlier ones): each may run
                 once, or never. In-doubt jobs of this call whose id the broker assigns (Redis
                 jobs without a custom id) have none to list: ``fates`` marks them.
    ``fates``    for the call that raised, one :class:`Fate` per input job, in input order
                 (None for an error raised outside a call: ``flush``, ``idle``, ``close``).
    ``accepted`` for the call that raised, one entry per input job: its id when its fate is
                 ACCEPTED, else None.

    What a caller does: a refused job may be sent again as it is (it runs once). A job in doubt
    may already be in the queue: send it again with the same custom ``job_id`` (the Redis
    adapter then adds nothing while the job exists; RabbitMQ takes a second message, so the
    handler must be idempotent), or record it as unknown. Never treat it as refused.
    """

    def __init__(self, message: str, job_ids: Sequence[str] = (),
                 accepted: Sequence[str | None] | None = None, *, in_doubt: Sequence[str] = (),
                 fates: Sequence["Fate"] | None = None):
        super().__init__(message)
        self.job_ids = list(job_ids)
        self.in_doubt = list(in_doubt)
        if fates is None and accepted is not None:
            fates = [Fate.ACCEPTED if job_id is not None else Fate.REFUSED for job_id in accepted]
        self.fates = None if fates is None else [Fate(f) for f in fates]
        if accepted is None and self.fates is not None:
            accepted = [None] * len(self.fates)
        self.accepted = None if accepted is None else [
            job_id if self.fates is None or fate is Fate.ACCEPTED else None
            for job_id, fate in zip(accepted, self.fates or [None] * len(accepted))]

    @property
    def doubtful(self) -> bool:
        """True when some job's fate is unknown."""
        return bool(self.in_doubt) or Fate.IN_DOUBT in (self.fates or ())

    @staticmethod
    def make(message: str, job_ids: Sequence[str] = (), accepted: Sequence[str | None] | None = None, *,
             in_doubt: Sequence[str] = (), fates: Sequence["Fate"] | None = None,
             unavailable: bool = False) -> "PublishFailed":
        """The right error for these outcomes: PublishInDoubt (UnavailableInDoubt when the broker
        is gone) if anything is in doubt, else PublishRejected (UnavailableRejected when the broker
        is gone; when nothing of the call can have reached it, the caller raises a plain
        BrokerUnavailable instead)."""
        doubt = bool(in_doubt) or (fates is not None and Fate.IN_DOUBT in [Fate(f) for f in fates])
        if doubt:
            cls: type[PublishFailed] = UnavailableInDoubt if unavailable else PublishInDoubt
        else:
            cls = UnavailableRejected if unavailable else PublishRejected
        return cls(message, job_ids, accepted, in_doubt=in_doubt, fates=fates)


class PublishRejected(PublishFailed):
    """The broker refused jobs (negative confirm, out of memory, queue full, a closed channel,
    a script error): every job this error names is certainly not held (``job_ids``); nothing is
    in doubt."""


class PublishInDoubt(PublishFailed):
    """Some jobs may or may not be held: no confirm within the timeout (a resource alarm), a
    WAIT that saw fewer replicas than asked, a channel closed with several jobs unconfirmed, a
    connection lost after sending and before the reply. ``in_doubt`` and ``fates`` say which;
    ``job_ids`` lists any that are certainly refused. See :class:`PublishFailed` for what to do."""


class UnavailableRejected(PublishRejected, BrokerUnavailable):
    """The broker became unreachable part-way through a call: the jobs this error names were
    never sent (``job_ids``, refused: not held), the call's others were accepted (``fates``);
    nothing is in doubt. Both an outage and a PublishFailed."""


class UnavailableInDoubt(PublishInDoubt, BrokerUnavailable):
    """The broker became unreachable while jobs were sent and unanswered: both an outage
    (``except BrokerUnavailable`` catches it) and jobs in doubt."""


class InvalidJob(ValueError):
    """A job cannot be published as given (not JSON-serialisable, bad option...)."""


class UnrecoverableError(Exception):
    """Raise from a handler to fail a job at once, skipping any remaining attempts."""


def _check_int(name: str, value: Any, low: int, high: int, other: str = "") -> None:
    """An integer option in [low, high] (bools are refused: True is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidJob(f"{name} must be {other}an integer {low}..{high:,}, got {_short(value)}")


def _check_text(name: str, value: str) -> None:
    """Text that travels as UTF-8 in at most MAX_NAME_BYTES bytes."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidJob(f"{name} must be valid Unicode text (UTF-8): {exc.reason} at {exc.start}") from None
    if size > MAX_NAME_BYTES:
        raise InvalidJob(f"{name} is {size:,} bytes in UTF-8; the limit is {MAX_NAME_BYTES}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"



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
        try:
            object.__setattr__(self, "type", BackoffType(self.type))
        except ValueError:
            raise InvalidJob(f"backoff type must be 'fixed' or 'exponential', got {self.type!r}") from None
        _check_int("backoff delay_ms", self.delay_ms, 0, MAX_DELAY_MS)

    def delay_for(self, attempts_made: int) -> int:
        """Delay in ms before the next attempt, after ``attempts_made`` failed attempts (>= 1),
        at most :data:`MAX_DELAY_MS`."""
        if self.type is BackoffType.FIXED:
            return self.delay_ms
        exponent = max(attempts_made, 1) - 1
        if exponent >= 64:
            return MAX_DELAY_MS if self.delay_ms else 0
        return min(self.delay_ms << exponent, MAX_DELAY_MS)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.value, "delay": self.delay_ms}

    @classmethod
    def from_json(cls, raw: Any) -> "Backoff | None":
        """Accept BullMQ's forms: a number (fixed delay) or ``{"type": ..., "delay": ...}``."""
        if raw is None or raw == {} or raw is False:
            return None
        try:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return cls(BackoffType.FIXED, int(raw))
            if isinstance(raw, dict) and raw.get("type") in ("fixed", "exponential"):
                return cls(BackoffType(raw["type"]), int(raw.get("delay") or 0))
        except (TypeError, ValueError, OverflowError) as exc:  # 1e400, "x", NaN...: say which
            raise InvalidJob(f"unsupported backoff {raw!r}: {exc}") from None
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
        _check_int("delay_ms", self.delay_ms, 0, MAX_DELAY_MS)
        _check_int("priority", self.priority, 0, MAX_PRIORITY)
        _check_int("attempts", self.attempts, 1, MAX_COUNT_OPTION)
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise InvalidJob(f"backoff must be a Backoff or None, got {self.backoff!r}")
        if self.job_id is not None:
            if not isinstance(self.job_id, str) or not self.job_id or ":" in self.job_id \
                    or self.job_id.isdigit():
                raise InvalidJob("job_id must be a non-empty string without ':' and not all digits "
                                 f"(BullMQ reserves numeric ids for its counter), got {self.job_id!r}")
            _check_text("job_id", self.job_id)
        for name in ("remove_on_complete", "remove_on_fail"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                _check_int(name, value, 0, MAX_COUNT_OPTION, "a bool or ")


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
    """How a run of a job was settled, in the contract's words. A worker holds a job under a
    *lease* (BullMQ: the job's lock, renewed while it runs; AMQP: the unacknowledged delivery,
    held while the channel lives); a lease that ran out or was taken back means the broker
    handed the job out again."""

    COMPLETED = "completed"
    RETRIED = "retried"       # failed, another attempt is scheduled (maybe after a backoff)
    FAILED = "failed"         # failed for good: in the failed set / dead-letter queue
    LOST_LEASE = "lost_lock"  # finished, but its lease was gone: the job was (or will be) handed out again
    LOST_LOCK = "lost_lock"   # BullMQ's word for LOST_LEASE (the same member; results files keep "lost_lock")


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
    """Counts the broker itself can report. ``None`` means this broker cannot tell (unknown,
    not zero).

    waiting   ready to run (including prioritized)
    active    handed to a worker, not settled
    delayed   waiting for a delay or a backoff to pass
    completed finished jobs the broker still keeps (RabbitMQ keeps none)
    failed    failed jobs kept: BullMQ's failed set, RabbitMQ's dead-letter queue

    What each adapter's ``stats()`` can see is its own docstring's to say: over AMQP alone,
    RabbitMQ reports ready messages only (no unacked, nothing held for at-least-once
    dead-lettering). :meth:`Broker.held` counts everything that may yet run.
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
    connection closes), "lock-expiry" (the job's lease, a lock in BullMQ's words, must expire,
    then a periodic check hands it out again) or "none" (nothing outlives the worker's process).
    The trigger names stay as results files have them.
    For "lock-expiry" (BullMQ's stalled check) the bound is max(lock, 2 x interval) + interval.
    A job goes back at the first check that finds its lock gone and finds the mark an earlier
    check set on it (every check marks all active jobs; renewing a lock clears the mark), so
    it needs its lock to expire (at most a lock duration after the death) and two checks after
    its last renewal. Checks come an interval apart, but if the dead worker was the one running
    them, the others wait for its throttle key (``stalled-check``, one interval) to expire, so
    the first check after its last one may come up to two intervals later. Without that case
    the bound is max(lock, interval) + interval. The earliest is half a lock: a lock renewed
    just before the death (every half lock) still had that long to live. The worker options
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
            return (max(lock, 2 * interval) + interval) / 1000
        return None

    def describe(self, worker_options: Mapping[str, Any] | None = None) -> str:
        """The rule in words, with its bound for these options."""
        bound = self.bound_s(worker_options)
        if self.trigger == "connection-close":
            return f"jobs back as soon as the connection closes (< {bound:g} s)"
        if self.trigger == "lock-expiry":
            return f"jobs back within max(lock, 2 x stalled interval) + stalled interval ({bound:.1f} s)"
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
    repeated_id: Feature = Feature(Support.NONE, "a second publish with a job id already held is "
                                                 "a second job")
    """What a publish with a custom ``job_id`` the broker already holds does (see the contract's
    guarantees): it decides whether resending a job in doubt can run it twice."""

    FEATURES = ("delay", "priority", "retries", "dead_letter", "routing", "batching", "redelivery_after_crash",
                "repeated_id")

    def lacks(self, feature: str) -> str | None:
        """Why this adapter does not do ``feature`` (one of :attr:`FEATURES`), or None when it
        does: a contract test that needs a feature an adapter declares unsupported is skipped
        with this reason, never failed (tests/conftest.py, the ``needs`` marker)."""
        if feature not in self.FEATURES:
            raise ValueError(f"unknown feature {feature!r}; the features are {', '.join(self.FEATURES)}")
        declared: Feature = getattr(self, feature)
        return None if declared.support is not Support.NONE else f"declares no {feature}: {declared.how}"

    def table(self) -> dict[str, str]:
        rows = {"delivery": self.delivery, "ordering": self.ordering, "durability": self.durability}
        for name in self.FEATURES:
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
    def close(self) -> None:
        """Wait for what is still in flight (as ``flush``), then release the connection. Jobs
        refused or in doubt at that moment raise PublishFailed once the connection is closed,
        their ids in the error (never a raw library error). Closing twice is harmless."""

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.close()
        except PublishFailed:
            if exc_type is None:
                raise  # otherwise the error already leaving the block is the one to see


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
    #: The worker class whose keyword options the constructor takes and passes on as the
    #: defaults of every worker it makes (``Adapter(url, queue=..., lock_duration_ms=...)``).
    worker_class: type | None = None

    @classmethod
    def option_names(cls) -> frozenset[str] | None:
        """Every keyword ``Adapter(url, **options)`` takes: its constructor's own (``queue``,
        ``routes``, ``reconnect_for_s``, ``max_job_bytes``, its durability settings...), and
        the keywords of :attr:`worker_class`, which it passes on to its workers. None when the
        constructor takes anything (``**kwargs``) and names no worker class: then nothing is
        checked. :meth:`brokers.registry.Driver.open` refuses any other key by name."""
        import inspect

        def keywords(function: Any, skip: set[str]) -> tuple[set[str], bool]:
            params = inspect.signature(function).parameters.values()
            named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - skip
            return named, any(p.kind is p.VAR_KEYWORD for p in params)

        own, takes_any = keywords(cls.__init__, {"self", "url"})
        if cls.worker_class is None:
            return None if takes_any else frozenset(own)
        passed, _ = keywords(cls.worker_class.__init__, {"self", "broker", "handlers", "lanes", "hooks",
                                                         "concurrency"})
        return frozenset(own | passed)

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

    def held(self) -> int | None:
        """How many jobs of this queue the broker still holds that may yet run: ready, active,
        delayed, and whatever it holds out of ``stats()``'s sight; None when it cannot tell.
        The default adds up ``stats()`` (waiting + active + delayed), for adapters whose
        ``stats()`` sees everything; others override it. It may be slow (the AMQP adapter asks
        the node): the harness asks it before it calls a run over, never in a fast loop."""
        counted = self.stats()
        return (counted.waiting or 0) + (counted.active or 0) + (counted.delayed or 0)

    @abstractmethod
    def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        """Up to ``limit`` failed jobs with their reasons, oldest first; leaves them in place."""

    @abstractmethod
    def purge(self) -> None:
        """Remove every job and every key/queue of this logical queue."""

    def clear(self) -> None:
        """Remove every job, keeping the queue's structures (RabbitMQ's queue.purge, BullMQ's
        drain/obliterate of jobs). Run it with no worker active."""
        self.purge()

    def remove(self) -> None:
        """The end of this logical queue: remove every job and every key/queue/exchange, and
        declare nothing again (``purge`` leaves an empty queue ready for use). Run it with no
        worker active; a test or benchmark that is done with its queue calls this."""
        self.purge()

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


_CONTAINER = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(text: str) -> int:
    """Deepest nesting of lists/objects in JSON text (strings skipped)."""
    depth = deepest = 0
    for match in _CONTAINER.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def encode_data(data: Any, max_bytes: int | None = MAX_JOB_BYTES) -> str:
    """JSON-encode job data, or raise :class:`InvalidJob` saying why it cannot be.

    Job data travels as JSON: a worker gets the JSON round trip of what was published (tuples
    arrive as lists, non-string keys of objects as strings, as with BullMQ's JSON.stringify).
    Refused: what JSON cannot hold (NaN, sets, bytes, objects), data nested deeper than
    :data:`MAX_DEPTH`, and data whose JSON text is longer than ``max_bytes``.
    """
    try:
        text = JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"job data must be JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidJob(f"job data is nested too deeply for JSON (the limit is {MAX_DEPTH} levels)") from None
    if max_bytes is not None and len(text) > max_bytes:  # ASCII-only (ensure_ascii): characters are bytes
        raise InvalidJob(f"job data is {len(text):,} bytes as JSON; the limit is {max_bytes:,} bytes "
                         "(max_job_bytes)")
    if text.count("[") + text.count("{") > MAX_DEPTH:  # cheap test first: few jobs have that many
        depth = _depth(text)
        if depth > MAX_DEPTH:
            raise InvalidJob(f"job data is nested {depth} levels deep; the limit is {MAX_DEPTH}")
    return text


def check_job_name(name: Any) -> str:
    """A job type is non-empty text of at most 255 bytes in UTF-8 (AMQP's limit for a type)."""
    if not isinstance(name, str) or not name:
        raise InvalidJob(f"job name must be a non-empty string, got {_short(name)}")
    _check_text("job name", name)
    return name


def resolve_handler(handlers: Mapping[str, Handler] | Handler, name: str) -> Handler | None:
    if callable(handlers):
        return handlers  # type: ignore[return-value]
    return handlers.get(name)
