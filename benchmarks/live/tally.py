"""What the live view counts for one broker, from its load processes' reports.

accepted     jobs the producer saw accepted (reply or confirm)
refused      jobs the broker certainly does not hold: it refused them, or it was unreachable and
             they were never sent. Never accepted, so never waiting, never lost.
in_doubt     jobs whose publish ended in doubt (PublishInDoubt): the broker may hold them. Not
             accepted and never lost; ``doubt_ran`` counts those that ran since (each once).
ran          runs reported by consumers (a run is counted when its handler returns)
redelivered  runs of a job the broker handed out again (a worker died or stalled with it)
duplicated   runs of the same job and attempt beyond the first: the job ran twice. Recognised
             while the job's last run is less than ``DUPLICATE_WINDOW_S`` old (a run later than
             that counts as a run only): this bounds what the tally keeps.
lost         accepted jobs that can no longer run, among those accepted more than ``LOST_AFTER_S``
             ago and not run yet, every one of them (no cap).
             Redis (:meth:`Tally.found_missing`): each such job is looked up; one whose job hash
             is gone at two checks in a row is lost (exact; the second check keeps a run whose
             report is still in the pipe from being called lost). A lost job reported running
             later is taken back out.
             RabbitMQ (:meth:`Tally.check_lost`), which cannot be asked about one message: how
             many more such jobs there are than all the messages the broker reports holding
             (ready, delayed, unacked, at least a prefetch per worker), recomputed each time. A
             lower bound: a backlog of newer jobs hides losses until it drains, and a job merely
             late is never called lost.
Rates and latency percentiles are over the last seconds (``WINDOW_S``), like a dashboard; a
percentile is given only when those seconds hold the runs it needs (the report's rule,
:func:`benchmarks.harness.metrics.printable`: p50 20, p99 1,000), else None, and ``latency_n``
says how many runs there were.

What is kept, and for how long (memory is bounded by the jobs in flight, not by the session):
the id of every accepted job until it runs or is dead-lettered (Redis: or is found lost); once
run, its id and attempts for ``DUPLICATE_WINDOW_S`` after its last run; in-doubt ids until they
run or for ``DOUBT_KEEP_S``; lost ids for ``DUPLICATE_WINDOW_S`` (the count stays). RabbitMQ's
lost jobs stay among the unran ids (their count is what says they are lost) until the tally is
reset (a profile change restarts the broker empty).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

from ..harness.metrics import printable

WINDOW_S = 5.0        # latency percentiles over the runs of the last 5 s
RATE_S = 1.0          # rates over the last second
LOST_AFTER_S = 10.0
KEEP_S = 120.0        # the chart's history
DUPLICATE_WINDOW_S = 180.0   # a run's id and attempts are kept this long after the job's last run
DOUBT_KEEP_S = 900.0         # an in-doubt id is watched this long for a run


def _recent(times: deque[float], since: float) -> int:
    n = 0
    for t in reversed(times):
        if t <= since:
            break
        n += 1
    return n


def _percentile(values: list[float], q: float) -> float | None:
    """Percentile ``q`` of ``values``; None when there are too few of them for it (the rule)."""
    if not printable(q, len(values)):
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _prune(ids: dict[str, Any], before: float, when: Callable[[Any], float]) -> None:
    """Drop the oldest entries (insertion order) whose time is before ``before``."""
    while ids:
        key = next(iter(ids))
        if when(ids[key]) >= before:
            return
        del ids[key]


class Tally:
    """Thread-safe counters of one broker's live load. ``on_run(message)`` is called for every
    run (the lab's watches: a delayed or urgent job, the first redelivery after a kill)."""

    def __init__(self, on_run: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.on_run = on_run
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.unran: dict[str, float] = {}                 # accepted, not run: id -> accepted at
            self.ran: dict[str, tuple[float, int, bool]] = {}  # id -> (last run at, attempts seen as bits,
            #                                                        its acceptance counted)
            self.doubt: dict[str, float] = {}                 # in doubt, not run yet: id -> when
            self.lost_ids: dict[str, float] = {}              # Redis: found lost: id -> when
            self.suspects: set[str] = set()                   # Redis: missing at the last check
            self.counts = {"accepted": 0, "ran": 0, "redelivered": 0, "duplicated": 0, "refused": 0,
                           "in_doubt": 0, "doubt_ran": 0, "dead_lettered": 0, "lost": 0, "producer_errors": 0}
            self.in_times: deque[float] = deque()
            self.out_times: deque[float] = deque()
            self.latencies: deque[tuple[float, float]] = deque()
            self.last_error = ""

    def accept(self, ids: Iterable[str], at: float | None = None) -> None:
        """Jobs the broker accepted. An id seen before (accepted, or already run: a run may be
        reported before its acceptance) is not counted again."""
        at = time.time() if at is None else at
        with self.lock:
            for job_id in ids:
                job_id = str(job_id)
                if job_id in self.unran or job_id in self.lost_ids:
                    continue
                if job_id in self.ran:        # it ran before its acceptance was read
                    last, seen, accepted = self.ran[job_id]
                    if accepted:
                        continue
                    self.ran[job_id] = (last, seen, True)
                else:
                    self.unran[job_id] = at
                self.counts["accepted"] += 1
                self.in_times.append(at)

    def add(self, message: dict[str, Any]) -> None:
        """One report from a load process (see :mod:`benchmarks.live.load`)."""
        kind = message.get("e")
        if kind == "acc":
            self.accept(list(message.get("ids", [])), message.get("t"))
            return
        with self.lock:
            if kind == "ref":
                self.counts["refused"] += int(message.get("n", 1))
                self.last_error = str(message.get("why", ""))
            elif kind == "doubt":
                self._doubt([str(i) for i in message.get("ids", [])], int(message.get("n", 0)),
                            float(message.get("t", time.time())))
                self.last_error = str(message.get("why", ""))
            elif kind == "err":
                self.counts["producer_errors"] += 1
                self.counts["refused"] += int(message.get("n", 0))   # never sent: certainly not held
                self.last_error = str(message.get("why", ""))
            elif kind == "dead":
                self.counts["dead_lettered"] += 1
                self.unran.pop(str(message.get("id")), None)
            elif kind == "ran":
                self._ran(message)
        if kind == "ran" and self.on_run is not None:
            self.on_run(message)

    def _doubt(self, ids: list[str], n: int, at: float) -> None:
        fresh = [i for i in ids if i not in self.unran and i not in self.doubt]   # accepted is never doubted
        self.counts["in_doubt"] += len(fresh) + max(0, n - len(ids))   # n may count jobs with no id to list
        for job_id in fresh:
            if job_id in self.ran:        # it ran before the producer gave up on it
                self.counts["doubt_ran"] += 1
            else:
                self.doubt[job_id] = at

    def _ran(self, m: dict[str, Any]) -> None:
        job_id, attempt, now = str(m["id"]), max(0, int(m.get("a", 0))), float(m.get("t", time.time()))
        self.counts["ran"] += 1
        self.out_times.append(now)
        self.latencies.append((now, float(m.get("lat", 0.0))))
        if m.get("r"):
            self.counts["redelivered"] += 1
        _, seen, accepted = self.ran.pop(job_id, (now, 0, False))   # re-inserted: kept in last-run order
        if seen >> attempt & 1:
            self.counts["duplicated"] += 1
        accepted = self.unran.pop(job_id, None) is not None or accepted
        self.ran[job_id] = (now, seen | 1 << attempt, accepted)
        self.suspects.discard(job_id)
        if self.doubt.pop(job_id, None) is not None:
            self.counts["doubt_ran"] += 1
        if self.lost_ids.pop(job_id, None) is not None:   # called lost, and it ran after all
            self.counts["lost"] -= 1

    # ------------------------------------------------------------------ lost
    def old_unran(self, now: float | None = None) -> list[str]:
        """Every id accepted more than LOST_AFTER_S ago that has not run (acceptance order)."""
        cutoff = (time.time() if now is None else now) - LOST_AFTER_S
        with self.lock:
            return [job_id for job_id, at in self.unran.items() if at < cutoff]

    def found_missing(self, checked: Iterable[str], missing: Iterable[str], now: float | None = None) -> None:
        """Redis: of the ids ``checked`` (from :meth:`old_unran`), the broker has no job hash for
        ``missing``. One missing at two checks in a row, and still not run, is lost."""
        now = time.time() if now is None else now
        gone = set(missing)
        with self.lock:
            for job_id in checked:
                if job_id not in gone:
                    self.suspects.discard(job_id)
                elif job_id not in self.unran:     # it ran (or was dead-lettered) meanwhile
                    self.suspects.discard(job_id)
                elif job_id in self.suspects:
                    self.suspects.discard(job_id)
                    del self.unran[job_id]
                    self.lost_ids[job_id] = now
                    self.counts["lost"] += 1
                else:
                    self.suspects.add(job_id)

    def check_lost(self, held: int | None, now: float | None = None) -> None:
        """RabbitMQ: set ``lost`` from ``held``, how many jobs the broker says it holds (None:
        unknown, the last answer stands): old unran jobs beyond what it holds."""
        if held is not None:
            self.set_lost(max(0, len(self.old_unran(now)) - held))

    def set_lost(self, n: int) -> None:
        with self.lock:
            self.counts["lost"] = n

    # ------------------------------------------------------------------ reading
    def tracked_ids(self) -> int:
        """How many job ids the tally holds now (its memory)."""
        with self.lock:
            return len(self.unran) + len(self.ran) + len(self.doubt) + len(self.lost_ids) + len(self.suspects)

    def _forget(self, now: float) -> None:
        _prune(self.ran, now - DUPLICATE_WINDOW_S, lambda v: v[0])
        _prune(self.doubt, now - DOUBT_KEEP_S, float)
        _prune(self.lost_ids, now - DUPLICATE_WINDOW_S, float)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        with self.lock:
            self._forget(now)
            for times in (self.in_times, self.out_times):
                while times and times[0] < now - KEEP_S:
                    times.popleft()
            while self.latencies and self.latencies[0][0] < now - WINDOW_S:
                self.latencies.popleft()
            recent = [ms for _, ms in self.latencies]
            return {**self.counts,
                    "in_per_s": _recent(self.in_times, now - RATE_S) / RATE_S,
                    "out_per_s": _recent(self.out_times, now - RATE_S) / RATE_S,
                    "p50_ms": _percentile(recent, 50), "p99_ms": _percentile(recent, 99), "latency_n": len(recent),
                    "mean_ms": statistics.fmean(recent) if recent else None,
                    "waiting_to_run": len(self.unran), "last_error": self.last_error,
                    "tracked_ids": len(self.unran) + len(self.ran) + len(self.doubt) + len(self.lost_ids)
                    + len(self.suspects)}
