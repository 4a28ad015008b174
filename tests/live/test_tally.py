"""The live view's counters: duplicates, redeliveries, runs reported before their acceptance,
'lost' that never calls a late job lost, in-doubt and refused jobs apart from accepted ones,
and a memory bounded by the jobs in flight."""

from __future__ import annotations

from benchmarks.live.tally import DOUBT_KEEP_S, DUPLICATE_WINDOW_S, LOST_AFTER_S, Tally


def ran(job_id: str, attempt: int = 0, redelivered: bool = False, t: float = 100.0) -> dict:
    return {"e": "ran", "id": job_id, "name": "x", "a": attempt, "r": redelivered, "lat": 5.0, "ok": True, "t": t}


def test_a_run_reported_before_its_acceptance_is_not_left_waiting():
    tally = Tally()
    tally.add(ran("a"))
    tally.add({"e": "acc", "ids": ["a", "b"], "t": 99.0})
    snap = tally.snapshot(now=100.5)
    assert snap["accepted"] == 2 and snap["ran"] == 1 and snap["waiting_to_run"] == 1


def test_the_same_attempt_twice_is_a_duplicate_a_retry_is_not():
    tally = Tally()
    tally.add({"e": "acc", "ids": ["a"], "t": 99.0})
    tally.add(ran("a", attempt=0))
    tally.add(ran("a", attempt=1))                      # a retry after a failure: not a duplicate
    tally.add(ran("a", attempt=1, redelivered=True))    # the same attempt again: ran twice
    snap = tally.snapshot(now=100.5)
    assert snap["duplicated"] == 1 and snap["redelivered"] == 1 and snap["ran"] == 3


def test_lost_counts_only_old_jobs_the_broker_cannot_be_holding():
    tally = Tally()
    tally.accept(["old1", "old2", "old3"], at=0.0)
    tally.accept(["new"], at=LOST_AFTER_S + 5.0)
    now = LOST_AFTER_S + 6.0
    tally.check_lost(held=3, now=now)                  # the broker may still hold all three old ones
    assert tally.snapshot(now)["lost"] == 0
    tally.check_lost(held=1, now=now)                  # it holds one job: at least two old ones are gone
    assert tally.snapshot(now)["lost"] == 2
    tally.check_lost(held=None, now=now)               # unknown: the last answer stands
    assert tally.snapshot(now)["lost"] == 2
    tally.add(ran("old1", t=now))                      # it ran after all
    tally.check_lost(held=0, now=now)
    assert tally.snapshot(now)["lost"] == 2 and tally.old_unran(now) == ["old2", "old3"]


def test_old_unran_has_every_old_job_however_many_there_are():
    tally = Tally()
    tally.accept([f"j{i}" for i in range(12_000)], at=0.0)
    assert len(tally.old_unran(now=LOST_AFTER_S + 1)) == 12_000, "no cap: a loss behind a backlog is checked too"


def test_a_job_missing_at_two_checks_is_lost_and_a_late_run_takes_it_back():
    tally = Tally()
    tally.accept(["a", "b", "c"], at=0.0)
    now = LOST_AFTER_S + 1
    ids = tally.old_unran(now)
    tally.found_missing(ids, ["a", "b"], now)          # once: maybe its run report is still in the pipe
    assert tally.snapshot(now)["lost"] == 0
    tally.add(ran("b", t=now))                         # it was: b ran
    tally.found_missing(ids, ["a", "b"], now + 1)
    snap = tally.snapshot(now + 1)
    assert snap["lost"] == 1 and snap["waiting_to_run"] == 1, "a is lost; b ran; c is still held"
    tally.add(ran("a", t=now + 2))                     # a lost job that runs after all is not lost
    assert tally.snapshot(now + 2)["lost"] == 0


def test_in_doubt_is_neither_accepted_nor_refused_nor_lost_and_its_runs_are_counted():
    tally = Tally()
    tally.add({"e": "acc", "ids": ["a"], "t": 0.0})
    tally.add({"e": "doubt", "n": 2, "ids": ["d1", "d2"], "why": "no confirm in 5 s", "t": 0.0})
    tally.add({"e": "ref", "n": 3, "why": "queue full"})
    tally.add({"e": "err", "n": 1, "why": "connection refused"})   # never sent: certainly not held
    now = LOST_AFTER_S + 1
    tally.check_lost(held=0, now=now)
    snap = tally.snapshot(now)
    assert (snap["accepted"], snap["in_doubt"], snap["refused"], snap["producer_errors"]) == (1, 2, 4, 1)
    assert snap["lost"] == 1 and snap["waiting_to_run"] == 1, "only the accepted job can be lost"
    tally.add(ran("d1", t=now))
    tally.add(ran("d1", t=now, redelivered=True))
    snap = tally.snapshot(now)
    assert snap["doubt_ran"] == 1 and snap["duplicated"] == 1 and snap["accepted"] == 1


def test_ids_are_forgotten_once_run_and_past_the_duplicate_window():
    tally = Tally()
    n = 10_000
    tally.accept([f"j{i}" for i in range(n)], at=0.0)
    for i in range(n):
        tally.add(ran(f"j{i}", t=1.0))
    tally.add({"e": "doubt", "n": 1, "ids": ["d"], "t": 1.0})
    assert tally.snapshot(now=2.0)["tracked_ids"] == n + 1
    tally.add(ran("j0", t=1.0 + DUPLICATE_WINDOW_S / 2, redelivered=True))   # within the window: a duplicate
    assert tally.snapshot(now=2.0 + DUPLICATE_WINDOW_S / 2)["duplicated"] == 1
    snap = tally.snapshot(now=2.0 + DUPLICATE_WINDOW_S)
    assert snap["tracked_ids"] == 2, "only j0 (run again since) and the in-doubt id are kept"
    snap = tally.snapshot(now=2.0 + DUPLICATE_WINDOW_S + DOUBT_KEEP_S)
    assert snap["tracked_ids"] == 0 and snap["accepted"] == n and snap["ran"] == n + 1, "counts stay"


def test_a_percentile_is_given_only_with_the_runs_it_needs_in_its_window():
    from benchmarks.harness.metrics import min_samples

    tally = Tally()
    for i in range(min_samples(99) - 1):
        tally.add(ran(f"j{i}", t=100.0))
    snap = tally.snapshot(now=100.5)
    assert snap["latency_n"] == min_samples(99) - 1
    assert snap["p50_ms"] == 5.0 and snap["p99_ms"] is None, "999 runs: a p50, no p99"
    tally.add(ran("one-more", t=100.0))
    snap = tally.snapshot(now=100.5)
    assert snap["latency_n"] == min_samples(99) and snap["p99_ms"] == 5.0
