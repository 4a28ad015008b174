"""Recorders: latency histograms (HdrHistogram), per-second counters, sequence numbers.

Every process of a run records into its own :class:`Recorder`; the runner merges them.
Times are ``time.monotonic_ns()``: CLOCK_MONOTONIC is one clock for every process of a host,
so a send time taken in a producer and a start time taken in a consumer can be subtracted.

Sequence numbers: each producer numbers its jobs 0, 1, 2... Every job it sends ends in one of
three outcomes (the contract's Fate): *accepted* when the broker acknowledged it (publish
returned, or its confirm arrived), *refused* when the broker certainly does not hold it, *in
doubt* when it may (a timeout after sending, a WAIT short of its replicas, a connection lost
before the reply, or still unconfirmed when the producer stopped). Consumers count how many
times each (producer, number) ended its chain: it completed, or its last attempt failed (a job
retried after a failure is settled only by its final run). Lost = accepted but never settled;
duplicated = settling runs beyond the first; in doubt is counted apart (ran, ran twice, never
ran); refused but ran is a defect of the adapter's word.
"""

from __future__ import annotations

import base64
import math
import struct
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3  # 1 µs .. 1 hour, 3 significant digits
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
HISTOGRAMS = ("publish", "send_delay", "queue_wait", "end_to_end", "end_to_end_intended")
SAMPLES_BEYOND = 10  # a percentile is printed only when about this many samples lie beyond it


def min_samples(q: float) -> int:
    """The fewest samples percentile ``q`` (0-100) needs to be printed as a number:
    ``SAMPLES_BEYOND / (1 - q/100)``, rounded up, so that about ten samples lie above it
    (p50: 20, p90: 100, p99: 1,000, p99.9: 10,000). With fewer, the "percentile" is one of the
    few slowest samples (p99.9 of 735 samples is the maximum). The max (q = 100) needs one."""
    if q >= 100:
        return 1
    return math.ceil(Fraction(SAMPLES_BEYOND) / (1 - Fraction(str(q)) / 100))


def printable(q: float, n: int | None) -> bool:
    """True when ``n`` samples are enough to print percentile ``q`` (see :func:`min_samples`);
    False when they are not, or when ``n`` is unknown (an old file that kept neither its count
    nor its histogram): a percentile is never printed without knowing its n."""
    return n is not None and n >= min_samples(q)


def count_of(figure: dict[str, Any] | None, encoded: str | None = None) -> int | None:
    """The number of samples behind a :func:`summary`: its ``count``; for a summary written
    without one, the total count of its encoded histogram when that was kept; else None."""
    if figure and figure.get("count") is not None:
        return int(figure["count"])
    if encoded:
        return int(decode(encoded).get_total_count())
    return None


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_us(hist: HdrHistogram, value_ns: int) -> None:
    hist.record_value(min(max(value_ns // 1000, LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    raw = hist.encode()
    return raw.decode() if isinstance(raw, bytes) else raw


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode())


def recorded(hist: HdrHistogram) -> list[tuple[int, int]]:
    """(value, count) for every bucket that holds a count, lowest first; the value is the
    highest the bucket stands for, as hdrh's recorded iterator gives it. One pass over the
    counts array: hdrh's own iterators call several Python methods for every one of its
    ~24,000 buckets (about 0.17 s per histogram here, paid for every figure of every run)."""
    return [(hist.get_highest_equivalent_value(hist.get_value_from_index(index)), count)
            for index, count in enumerate(hist.counts[:hist.counts_len]) if count]


def summary(hist: HdrHistogram) -> dict[str, float | int]:
    """Count, mean, percentiles and max, in milliseconds (HdrHistogram precision: 3 digits).
    Each figure is the one hdrh's own methods give (a bucket's mean is its middle; a
    percentile is the highest value of the first bucket that reaches its share), read off
    :func:`recorded` in one pass."""
    count = hist.get_total_count()
    if not count:
        return {"count": 0}
    buckets = recorded(hist)
    middle_total = 0
    for highest, n in buckets:
        lowest = hist.get_lowest_equivalent_value(highest)
        middle_total += n * (lowest + ((highest - lowest + 1) >> 1))
    out: dict[str, float | int] = {"count": count, "mean": round(middle_total / count / 1000, 3)}
    for name, p in PERCENTILES.items():
        out[name] = round(value_at_percentile(hist, p, buckets) / 1000, 3)
    out["max"] = round(hist.get_max_value() / 1000, 3)
    return out


def value_at_percentile(hist: HdrHistogram, percentile: float,
                        buckets: list[tuple[int, int]] | None = None) -> int:
    """hdrh's ``get_value_at_percentile``, from :func:`recorded` buckets: the highest value of
    the first bucket that reaches the percentile's share (its lowest value for percentile 0)."""
    target = hist.get_target_count_at_percentile(percentile)
    seen = 0
    for value, n in buckets if buckets is not None else recorded(hist):
        seen += n
        if seen >= target:
            return value if percentile else hist.get_lowest_equivalent_value(value)
    return 0


class Trace(NamedTuple):
    """What the harness writes into every job's payload to follow it (as a JSON list): which
    producer sent it, its sequence number, when it was meant to be sent (0 in closed loop) and
    when it was sent, in monotonic ns."""

    producer: int
    seq: int
    intended_ns: int
    sent_ns: int


class SequenceCounts:
    """How many times each sequence number was seen, per producer (a bytearray per producer)."""

    def __init__(self) -> None:
        self.counts: dict[int, bytearray] = {}

    def add(self, producer: int, seq: int) -> int:
        """Count one sighting; return how many times it was seen before."""
        arr = self.counts.get(producer)
        if arr is None:
            arr = self.counts[producer] = bytearray(max(1024, seq + 1))
        elif seq >= len(arr):
            arr.extend(bytes(max(seq + 1 - len(arr), len(arr))))
        before = arr[seq]
        if before < 255:
            arr[seq] = before + 1
        return before

    def merge(self, other: "SequenceCounts") -> None:
        for producer, arr in other.counts.items():
            mine = self.counts.setdefault(producer, bytearray(len(arr)))
            if len(mine) < len(arr):
                mine.extend(bytes(len(arr) - len(mine)))
            for i, n in enumerate(arr):
                if n:
                    mine[i] = min(mine[i] + n, 255)

    def to_json(self) -> dict[str, str]:
        return {str(p): base64.b64encode(bytes(a)).decode() for p, a in self.counts.items()}

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> "SequenceCounts":
        out = cls()
        out.counts = {int(p): bytearray(base64.b64decode(a)) for p, a in raw.items()}
        return out


class Recorder:
    """What one process saw. Thread-safe: consumer handlers record from their threads.

    Latencies are appended to plain arrays and moved into the HdrHistograms in bulk (every
    64k values, and before reading), which keeps recording cheap on the hot path.
    """

    FLUSH_AT = 65536

    def __init__(self) -> None:
        self.t0_ns = self.window_start_ns = self.window_end_ns = 0
        self.hists: dict[str, HdrHistogram] = {h: new_histogram() for h in HISTOGRAMS}
        self.by_type: dict[str, HdrHistogram] = {}
        self._pending: dict[str, array] = {h: array("q") for h in HISTOGRAMS}
        self._pending_type: dict[str, array] = {}
        self.sent_per_s: dict[int, int] = {}
        self.accepted_per_s: dict[int, int] = {}  # by when the broker's acceptance was learnt
        self.accepted_per_tenth: dict[int, int] = {}  # the same by 100 ms: how long acceptances stopped
        self.done_per_s: dict[int, int] = {}
        self.sent = SequenceCounts()      # producer side: accepted
        self.refused_seqs = SequenceCounts()  # producer side: refused (certainly not held)
        self.doubt_seqs = SequenceCounts()    # producer side: in doubt (may be held)
        self.seen = SequenceCounts()      # consumer side: ran
        self.counters: dict[str, int] = {}
        self.redelivered_at: list[int] = []   # start times (monotonic ns) of redelivered runs
        self.lock = threading.Lock()

    def in_window(self, t_ns: int) -> bool:
        return self.window_start_ns <= t_ns < self.window_end_ns

    def _add(self, name: str, value_ns: int) -> None:
        pending = self._pending[name]
        pending.append(value_ns)
        if len(pending) >= self.FLUSH_AT:
            self._flush_one(self.hists[name], pending)

    @staticmethod
    def _flush_one(hist: HdrHistogram, pending: array) -> None:
        for value in pending:
            record_us(hist, value)
        del pending[:]

    def flush(self) -> None:
        """Move buffered values into the histograms (call before reading them)."""
        with self.lock:
            for name, pending in self._pending.items():
                self._flush_one(self.hists[name], pending)
            for name, pending in self._pending_type.items():
                self._flush_one(self.by_type.setdefault(name, new_histogram()), pending)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def sent_job(self, intended_ns: int, sent_ns: int) -> None:
        second = (sent_ns - self.t0_ns) // 1_000_000_000
        with self.lock:
            self.sent_per_s[second] = self.sent_per_s.get(second, 0) + 1
            if self.in_window(sent_ns):
                self.counters["sent_in_window"] = self.counters.get("sent_in_window", 0) + 1
            if intended_ns and self.in_window(intended_ns):
                self._add("send_delay", max(sent_ns - intended_ns, 0))

    def accepted(self, producer: int, seq: int, latency_ns: int, sent_ns: int) -> None:
        tenth = (sent_ns + latency_ns - self.t0_ns) // 100_000_000
        second = tenth // 10
        with self.lock:
            self.sent.add(producer, seq)
            self.accepted_per_s[second] = self.accepted_per_s.get(second, 0) + 1
            self.accepted_per_tenth[tenth] = self.accepted_per_tenth.get(tenth, 0) + 1
            self.counters["accepted"] = self.counters.get("accepted", 0) + 1
            if self.in_window(sent_ns):
                self._add("publish", latency_ns)

    def refused(self, producer: int, seq: int) -> None:
        """A job the broker certainly does not hold (refused, or never sent)."""
        with self.lock:
            self.refused_seqs.add(producer, seq)
            self.counters["rejected"] = self.counters.get("rejected", 0) + 1

    def in_doubt(self, producer: int, seq: int) -> None:
        """A job the broker may hold: the producer cannot know."""
        with self.lock:
            self.doubt_seqs.add(producer, seq)
            self.counters["in_doubt"] = self.counters.get("in_doubt", 0) + 1

    def ran(self, job_type: str, trace: Trace, start_ns: int, end_ns: int, redelivered: bool,
            attempts_made: int = 0, final: bool = True) -> None:
        """A job ran. ``final``: this run ends its chain (it completed, or its last attempt
        failed); only such runs settle a job, so a chain cut after a failed attempt shows as
        lost. Runs before the final one (retries) are counted apart: they are not duplicates.
        Latency is that of the first attempt."""
        producer, seq, intended_ns, sent_ns = trace
        second = (end_ns - self.t0_ns) // 1_000_000_000
        counters = self.counters
        with self.lock:
            if redelivered:
                counters["redelivered"] = counters.get("redelivered", 0) + 1
                self.redelivered_at.append(start_ns)
            if attempts_made > 0:
                counters["retry_runs"] = counters.get("retry_runs", 0) + 1
            if final:
                before = self.seen.add(producer, seq)
                self.done_per_s[second] = self.done_per_s.get(second, 0) + 1
                counters["ran"] = counters.get("ran", 0) + 1
                if self.window_start_ns <= end_ns < self.window_end_ns:
                    counters["done_in_window"] = counters.get("done_in_window", 0) + 1
                if before:
                    counters["duplicate_runs"] = counters.get("duplicate_runs", 0) + 1
            if attempts_made > 0:
                return
            reference = intended_ns or sent_ns
            if not self.window_start_ns <= reference < self.window_end_ns:
                return
            counters["ran_in_window"] = counters.get("ran_in_window", 0) + 1
            self._add("queue_wait", start_ns - sent_ns)
            self._add("end_to_end", end_ns - sent_ns)
            if intended_ns:
                self._add("end_to_end_intended", end_ns - intended_ns)
            pending = self._pending_type.get(job_type)
            if pending is None:
                pending = self._pending_type[job_type] = array("q")
            pending.append(end_ns - sent_ns)

    # ---------------------------------------------------------------------- (de)serialise
    def to_json(self) -> dict[str, Any]:
        self.flush()
        with self.lock:
            return {
                "hists": {k: encode(h) for k, h in self.hists.items()},
                "by_type": {k: encode(h) for k, h in self.by_type.items()},
                "sent_per_s": {str(k): v for k, v in self.sent_per_s.items()},
                "accepted_per_s": {str(k): v for k, v in self.accepted_per_s.items()},
                "accepted_per_tenth": {str(k): v for k, v in self.accepted_per_tenth.items()},
                "done_per_s": {str(k): v for k, v in self.done_per_s.items()},
                "sent": self.sent.to_json(), "seen": self.seen.to_json(), "counters": dict(self.counters),
                "refused": self.refused_seqs.to_json(), "doubt": self.doubt_seqs.to_json(),
                "redelivered_at": list(self.redelivered_at),
            }

    def merge_json(self, raw: dict[str, Any]) -> None:
        for k, text in raw["hists"].items():
            self.hists[k].add(decode(text))
        for k, text in raw["by_type"].items():
            self.by_type.setdefault(k, new_histogram()).add(decode(text))
        for name, target in (("sent_per_s", self.sent_per_s), ("done_per_s", self.done_per_s),
                             ("accepted_per_s", self.accepted_per_s),
                             ("accepted_per_tenth", self.accepted_per_tenth)):
            for k, v in raw.get(name, {}).items():
                target[int(k)] = target.get(int(k), 0) + v
        self.sent.merge(SequenceCounts.from_json(raw["sent"]))
        self.seen.merge(SequenceCounts.from_json(raw["seen"]))
        self.refused_seqs.merge(SequenceCounts.from_json(raw.get("refused", {})))
        self.doubt_seqs.merge(SequenceCounts.from_json(raw.get("doubt", {})))
        for k, v in raw["counters"].items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.redelivered_at += raw.get("redelivered_at", [])


SEEN_RECORD = struct.Struct("<iqq")  # producer, sequence number, end (monotonic ns): one completed run


def _seen_records(path: str) -> Iterator[tuple[int, int, int]]:
    with open(path, "rb") as log:
        data = log.read()
    usable = len(data) - len(data) % SEEN_RECORD.size  # a write cut by the kill is dropped
    return SEEN_RECORD.iter_unpack(data[:usable])


def read_seen_log(path: str) -> SequenceCounts:
    """A consumer's append-only log of completed runs (it survives the consumer's SIGKILL).
    Only the jobs: the runner asks this while a run ends, every tick (:func:`read_seen` reads
    the rest too, once, when the run has ended)."""
    counts = SequenceCounts()
    for producer, seq, _end in _seen_records(path):
        counts.add(producer, seq)
    return counts


@dataclass
class SeenLog:
    """What one consumer's log of completed runs says, read in one pass: the jobs it ran, its
    runs per second since the run's start (the timeline of a consumer that was killed and so
    never reported its own), and when its last run ended (monotonic ns; 0 when it has none)."""

    counts: SequenceCounts
    done_per_s: dict[int, int]
    last_end_ns: int


def read_seen(path: str, t0_ns: int) -> SeenLog:
    log = SeenLog(SequenceCounts(), {}, 0)
    for producer, seq, end_ns in _seen_records(path):
        log.counts.add(producer, seq)
        second = (end_ns - t0_ns) // 1_000_000_000
        log.done_per_s[second] = log.done_per_s.get(second, 0) + 1
        log.last_end_ns = max(log.last_end_ns, end_ns)
    return log


def loss_and_duplicates(sent: SequenceCounts, seen: SequenceCounts, refused: SequenceCounts | None = None,
                        doubt: SequenceCounts | None = None) -> dict[str, int]:
    """Every sent job's outcome against what ran.

    accepted, ran (distinct), lost (accepted, never ran), duplicated (runs beyond the first, of
    any job); refused, refused_ran (refused and ran anyway: the adapter's "refused" was untrue, a
    defect); in_doubt, doubt_ran (ran once), doubt_twice (ran more than once), doubt_never (never
    ran: it may be lost, or was never held); unexpected (ran, and the producer was told nothing
    of it). A job named twice counts once, by the strongest word: accepted, then in doubt, then
    refused."""
    refused = refused or SequenceCounts()
    doubt = doubt or SequenceCounts()
    out = dict.fromkeys(("accepted", "ran", "lost", "duplicated", "unexpected", "refused", "refused_ran",
                         "in_doubt", "doubt_ran", "doubt_twice", "doubt_never"), 0)
    empty = bytearray()
    for producer in set(sent.counts) | set(seen.counts) | set(refused.counts) | set(doubt.counts):
        a = sent.counts.get(producer, empty)
        s = seen.counts.get(producer, empty)
        r = refused.counts.get(producer, empty)
        d = doubt.counts.get(producer, empty)
        for i in range(max(len(a), len(s), len(r), len(d))):
            runs = s[i] if i < len(s) else 0
            out["ran"] += runs > 0
            out["duplicated"] += max(runs - 1, 0)
            if i < len(a) and a[i]:
                out["accepted"] += 1
                out["lost"] += not runs
            elif i < len(d) and d[i]:
                out["in_doubt"] += 1
                out["doubt_ran" if runs == 1 else "doubt_twice" if runs > 1 else "doubt_never"] += 1
            elif i < len(r) and r[i]:
                out["refused"] += 1
                out["refused_ran"] += runs > 0
            elif runs:
                out["unexpected"] += 1
    return out
