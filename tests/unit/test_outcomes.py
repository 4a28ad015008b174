"""How outcomes are put in words and numbers: outages that never end, jobs in doubt, refusals
that ran (no broker needed)."""

from __future__ import annotations

import json

from benchmarks.faults.common import Row, outcome_words, with_outcomes
from benchmarks.faults.replication import outage_words, resumed, unavailable_s


def _timeline(tenths: list[int]) -> dict:
    return {"figures": {"timeline": {"accepted_per_100ms": tenths}}}


def test_an_outage_that_never_ended_counts_to_the_end_of_the_run_not_as_zero():
    """Acceptances stop at the fault (3 s) and never come back before the producers stop (10 s):
    the stretch is 7 s and "never resumed", not 0.0 s (the old figure stopped at the last
    acceptance, so the worst outage read as the best)."""
    result = _timeline([5] * 30)  # the timeline ends at the last acceptance, at 3 s
    assert unavailable_s(result, 3.0, 10.0) == 7.0
    assert resumed(result, 3.0, 10.0) is False
    assert "never resumed" in outage_words(7.0, False)


def test_a_quiet_end_long_after_the_fault_is_not_an_outage_that_never_ended():
    """Acceptances came back after the fault, then stopped 1.2 s before the end (a closed-loop
    producer waits while the backlog is full): that is not "never resumed"."""
    result = _timeline([5] * 30 + [0] * 5 + [5] * 33 + [0] * 12)
    assert resumed(result, 3.0, 8.0) is True


def test_an_outage_that_ended_is_its_longest_gap_and_resumed():
    result = _timeline([5] * 30 + [0] * 12 + [5] * 58)
    assert unavailable_s(result, 3.0, 10.0) == 1.2
    assert resumed(result, 3.0, 10.0) is True
    assert outage_words(1.2, True) == "no job accepted for 1.2 s"


def test_in_doubt_and_refused_jobs_are_said_in_words():
    figures = {"in_doubt": 450, "in_doubt_outcome": {"ran": 450, "ran_twice": 0, "never_ran": 0}, "rejected": 3,
               "refused_ran": 0}
    words = outcome_words(figures)
    assert "in doubt 450 (ran 450, ran twice 0, never ran 0)" in words and "refused 3, none of which ran" in words
    assert outcome_words({"in_doubt": 0, "rejected": 0}) == ""


def test_a_refusal_that_ran_fails_the_row_and_its_results_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"figures": {"in_doubt": 0, "rejected": 2, "refused_ran": 2},
                                "fault": {"expectation": "lost 0", "met": True}}))
    row = with_outcomes(Row("replication", "redis", "p", 0, 0, None, "lost 0", True, "run 1/1", str(path)))
    assert row.met is False and row.refused_ran == 2 and "ran anyway" in row.note
    assert json.loads(path.read_text())["fault"]["met"] is False
