"""What the live view counts for one broker, from its load processes' reports.

accepted     jobs the producer saw accepted (reply or confirm), by id
ran          runs reported by consumers (a run is counted when its handler returns)
redelivered  runs of a job the broker handed out again (a worker died or stalled with it)
duplicated   runs of the same job and attempt beyond the first: the job ran twice
lost         accepted jobs that can no longer run, among those accepted more than ``LOST_AFTER_S``
             ago and not run yet. Redis: the ones whose job hash is gone (exact). RabbitMQ, which
             cannot be asked about one message: how many more there are than all the messages
             the broker reports holding (ready, delayed, unacked), which can only undercount (a
             backlog of newer jobs hides losses) and never calls a job lost that is merely late.
Rates and latency percentiles are over the last seconds (``WINDOW_S``), like a dashboard.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Any, Callable

WINDOW_S = 5.0        # latency percentiles over the runs of the last 5 s
RATE_S = 1.0          # rates over the last second
LOST_AFTER_S = 10.0
KEEP_S = 120.0        # the chart's history


def _recent(times: deque[float], since: float) -> int:
    n = 0
    for t in reversed(times):
        if t <= since:
            break
        n += 1
    return n


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Tally:
    """Thread-safe counters of one broker's live load. ``on_run(message)`` is called for every
    run (the lab's watches: a delayed or urgent job, the first redelivery after a kill)."""

    def __init__(self, on_run: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.on_run = on_run
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.accepted: dict[str, float] = {}
            self.unran: dict[str, float] = {}
            self.attempts: set[tuple[str, int]] = set()
            self.ran_ids: set[str] = set()   # a run may be reported before its acceptance is
            self.counts = {"accepted": 0, "ran": 0, "redelivered": 0, "duplicated": 0, "refused": 0,
                           "dead_lettered": 0, "lost": 0, "producer_errors": 0}
            self.in_times: deque[float] = deque()
            self.out_times: deque[float] = deque()
            self.latencies: deque[tuple[float, float]] = deque()
            self.last_error = ""

    def accept(self, ids: list[str], at: float | None = None) -> None:
        at = time.time() if at is None else at
        with self.lock:
            for job_id in ids:
                if job_id not in self.accepted:
                    self.accepted[job_id] = at
                    if job_id not in self.ran_ids:
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
            elif kind == "err":
                self.counts["producer_errors"] += 1
                self.last_error = str(message.get("why", ""))
            elif kind == "dead":
                self.counts["dead_lettered"] += 1
                self.unran.pop(str(message.get("id")), None)
            elif kind == "ran":
                self._ran(message)
        if kind == "ran" and self.on_run is not None:
            self.on_run(message)

    def _ran(self, m: dict[str, Any]) -> None:
        job_id, attempt, now = str(m["id"]), int(m.get("a", 0)), float(m.get("t", time.time()))
        self.counts["ran"] += 1
        self.out_times.append(now)
        self.latencies.append((now, float(m.get("lat", 0.0))))
        if m.get("r"):
            self.counts["redelivered"] += 1
        if (job_id, attempt) in self.attempts:
            self.counts["duplicated"] += 1
        self.attempts.add((job_id, attempt))
        self.ran_ids.add(job_id)
        self.unran.pop(job_id, None)

    def old_unran(self, now: float | None = None, limit: int = 5000) -> list[str]:
        """Ids accepted more than LOST_AFTER_S ago that have not run (oldest first, at most ``limit``)."""
        now = time.time() if now is None else now
        with self.lock:
            return [job_id for job_id, at in self.unran.items() if now - at > LOST_AFTER_S][:limit]

    def check_lost(self, held: int | None, now: float | None = None) -> None:
        """Set ``lost`` from ``held``, how many jobs the broker says it holds (None: unknown)."""
        if held is not None:
            self.set_lost(max(0, len(self.old_unran(now, limit=10**9)) - held))

    def set_lost(self, n: int) -> None:
        with self.lock:
            self.counts["lost"] = n

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        with self.lock:
            for times in (self.in_times, self.out_times):
                while times and times[0] < now - KEEP_S:
                    times.popleft()
            while self.latencies and self.latencies[0][0] < now - WINDOW_S:
                self.latencies.popleft()
            recent = [ms for _, ms in self.latencies]
            return {**self.counts,
                    "in_per_s": _recent(self.in_times, now - RATE_S) / RATE_S,
                    "out_per_s": _recent(self.out_times, now - RATE_S) / RATE_S,
                    "p50_ms": _percentile(recent, 50), "p99_ms": _percentile(recent, 99),
                    "mean_ms": statistics.fmean(recent) if recent else None,
                    "waiting_to_run": len(self.unran), "last_error": self.last_error}
