"""Every Redis key of a BullMQ-style queue, in one place.

The layout is BullMQ's (v5), so that the official BullMQ clients and ours can share a queue:
``<prefix>:<queue>:<suffix>`` with prefix ``bull``. Facts from BullMQ's documentation and
its published scripts; the names are data, not code.

wait         LIST    job ids ready to run, pushed on the left, taken from the right (FIFO)
active       LIST    job ids handed to a worker and not settled
prioritized  ZSET    job ids with a priority; score = priority * 2^32 + a counter (FIFO per level)
pc           STRING  that counter
delayed      ZSET    job ids waiting for a time; score = due time in ms * 0x1000 + a sequence
completed    ZSET    finished job ids; score = finishedOn (ms)
failed       ZSET    failed job ids; score = finishedOn (ms)
stalled      SET     active job ids seen at the last stalled check (a lock renewal removes one)
stalled-check STRING throttle: exists while a stalled check ran less than stalledInterval ago
id           STRING  counter for generated job ids
meta         HASH    queue settings: ``opts.maxLenEvents``, ``paused``, ``version``
events       STREAM  queue events (added, waiting, active, completed, failed, ...), trimmed
marker       ZSET    wake-up for idle workers: member "0" score 0 = jobs are ready;
                     member "1" score = time (ms) of the next delayed job
paused       LIST    where older BullMQ versions parked waiting jobs while a queue was paused;
                     workers move it back to wait, as BullMQ's resume does
call:<token> STRING  what one call of a script that may be sent twice did (our addition, see
                     lua/include/queue.lua), kept a few minutes
<id>         HASH    the job: name, data, opts, timestamp, delay, priority, processedOn,
                     finishedOn, returnvalue, failedReason, stacktrace, atm (attempts made),
                     ats (attempts started), stc (stalled counter), pb (processed by)
<id>:lock    STRING  the token of the worker that holds the job; expires after lockDuration
<id>:logs    LIST    job log lines (removed with the job)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract import DEFAULT_LANE

PREFIX = "bull"
LOCK_SUFFIX = ":lock"
LOGS_SUFFIX = ":logs"

# Marker members (BullMQ v5).
MARKER_READY = "0"
MARKER_DELAYED = "1"

# Job hash field names (BullMQ's).
F_NAME = "name"
F_DATA = "data"
F_OPTS = "opts"
F_TIMESTAMP = "timestamp"
F_DELAY = "delay"
F_PRIORITY = "priority"
F_PROCESSED_ON = "processedOn"
F_FINISHED_ON = "finishedOn"
F_RETURN_VALUE = "returnvalue"
F_FAILED_REASON = "failedReason"
F_STACKTRACE = "stacktrace"
F_ATTEMPTS_MADE = "atm"
F_ATTEMPTS_STARTED = "ats"
F_STALLED_COUNTER = "stc"
F_PROCESSED_BY = "pb"

STALLED_REASON = "job stalled more than allowable limit"

# Suffixes of a queue's own keys (ours, and those BullMQ itself uses). A job's hash is
# ``bull:<queue>:<id>``, so a custom job id equal to one of them would write over that key.
RESERVED_IDS = frozenset({
    "wait", "active", "prioritized", "pc", "delayed", "completed", "failed", "stalled", "stalled-check",
    "id", "meta", "events", "marker", "paused", "limiter", "repeat", "de", "waiting-children", "metrics",
})


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one BullMQ queue (one lane of a brokerbench queue)."""

    name: str
    prefix: str = PREFIX

    @property
    def base(self) -> str:
        """``bull:<name>:`` - job hashes are ``base + id``."""
        return f"{self.prefix}:{self.name}:"

    def key(self, suffix: str) -> str:
        return self.base + suffix

    @property
    def wait(self) -> str: return self.key("wait")
    @property
    def active(self) -> str: return self.key("active")
    @property
    def prioritized(self) -> str: return self.key("prioritized")
    @property
    def pc(self) -> str: return self.key("pc")
    @property
    def delayed(self) -> str: return self.key("delayed")
    @property
    def completed(self) -> str: return self.key("completed")
    @property
    def failed(self) -> str: return self.key("failed")
    @property
    def stalled(self) -> str: return self.key("stalled")
    @property
    def stalled_check(self) -> str: return self.key("stalled-check")
    @property
    def id(self) -> str: return self.key("id")
    @property
    def meta(self) -> str: return self.key("meta")
    @property
    def events(self) -> str: return self.key("events")
    @property
    def marker(self) -> str: return self.key("marker")
    @property
    def paused(self) -> str: return self.key("paused")

    def call(self, token: str) -> str:
        """The key that records what the call with ``token`` did (never a job id: it has ':')."""
        return self.key(f"call:{token}")

    def job(self, job_id: str) -> str:
        return self.base + job_id

    def lock(self, job_id: str) -> str:
        return self.base + job_id + LOCK_SUFFIX


def lane_queue_name(queue: str, lane: str) -> str:
    """The BullMQ queue that holds one lane: the queue itself for the default lane."""
    return queue if lane == DEFAULT_LANE else f"{queue}-{lane}"
