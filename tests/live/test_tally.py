"""The live view's counters: duplicates, redeliveries, runs reported before their acceptance,
and 'lost' that never calls a late job lost."""

from __future__ import annotations

from benchmarks.live.tally import LOST_AFTER_S, Tally


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
