"""Every percentile knows its sample count: a percentile with fewer than 10 / (1 - q) samples
(p50: 20, p99: 1,000, p99.9: 10,000) is never printed as a number, in the report's tables, its
takeaways and claims, or by ``compare``; where one is shown, its n is shown with it. Checked
against the counts of the results files the views read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.harness.metrics import value_at_percentile
from benchmarks.results import claims, compare, report, takeaways
from benchmarks.results.percentiles import cell, sig, words
from benchmarks.results.plots import merged
from tests.helpers.markdown import table as _table
from tests.helpers.results_files import write_run


def test_three_significant_digits_never_round_the_integer_part():
    assert [sig(v) for v in (0.012345, 2.934, 18.94, 116.4, 1234.5, 9.996)] == \
        ["0.0123", "2.93", "18.9", "116", "1,234", "10.0"]


def test_words_and_cells_give_a_value_only_at_or_over_its_threshold():
    assert words("p99", 2.934, 1_000) == "p99 2.93 ms (n=1,000)"
    assert words("p99", 2.934, 999, most=7.0) == "p99: too few samples (n=999 of the 1,000 it needs; max 7.00 ms)"
    assert words("p99_9", 2.934, None) == "p99.9: n unknown, not shown"
    assert cell("p50", 1.5, 20) == "1.50" and cell("p50", 1.5, 19) == "n too small"
    assert cell("p99_9", 1.5, 9_999, most=40.0) == "max 40.0 (n too small)"


@pytest.fixture(scope="module")
def few_and_more(tmp_path_factory) -> tuple[Path, dict, dict]:
    """Redis: one open-loop run of 500 jobs; RabbitMQ: one of 1,500 (publish calls alike)."""
    folder = tmp_path_factory.mktemp("samples")
    few, _ = write_run(folder, broker="redis", n=500, seed=1)
    more, _ = write_run(folder, broker="rabbitmq", n=1_500, latency_ms=12.0, seed=2)
    return folder, few, more


def test_the_headline_prints_a_percentile_only_with_its_samples_and_shows_n(few_and_more, tmp_path):
    folder, few, more = few_and_more
    text = report.build([folder], tmp_path).read_text()
    rows = {r["broker"]: r for r in _table(text, "| job type | broker | durability | max jobs/s")}
    for label, result in (("BullMQ-style Redis", few), ("RabbitMQ", more)):
        e2e = result["figures"]["latency_ms"]["end_to_end_intended"]
        publish = result["figures"]["latency_ms"]["publish"]
        row = rows[label]
        assert row["latency n"] == f"{e2e['count']:,}" and row["publish n"] == f"{publish['count']:,}"
        assert row["p50 ms"] == sig(e2e["p50"]), "p50 needs 20 samples: both runs have them"
        assert row["p99.9 ms"] == f"max {sig(e2e['max'])} (n too small)", "p99.9 needs 10,000: the max, labelled"
        if e2e["count"] >= 1_000:
            assert row["p99 ms"] == sig(e2e["p99"]) and row["publish p99 ms"] == sig(publish["p99"])
        else:
            assert row["p99 ms"] == "n too small" and row["publish p99 ms"] == "n too small"
    assert few["figures"]["latency_ms"]["end_to_end_intended"]["count"] < 1_000 <= \
        more["figures"]["latency_ms"]["end_to_end_intended"]["count"]
    assert not re.search(r"p99\.9 \d", text), "no p99.9 number anywhere: no run has 10,000 samples"
    assert "p99.9: too few samples (it needs 10,000" in text and "(n=500, the repetitions together)" in text
    enqueue = _table(text, "| claim | measured")[0]
    assert "p99: too few calls" in enqueue["measured"] and "slowest call" in enqueue["verdict"]


def test_takeaways_never_quote_a_percentile_under_the_rule(tmp_path):
    few, _ = write_run(tmp_path, broker="redis", n=500, seed=3)
    many, _ = write_run(tmp_path, broker="rabbitmq", n=20_000, seed=4)
    text = takeaways.tail([few, many])
    at = text.index("RabbitMQ p50")
    redis, rabbitmq = text[:at], text[at:]
    assert not re.search(r"p99(\.9)? \d", redis), redis
    assert "p99: too few samples" in redis and "(n=500," in redis
    hist = merged([many], "end_to_end_intended")
    assert f"p99.9 {sig(value_at_percentile(hist, 99.9) / 1000)} ms" in rabbitmq and "(n=20,000," in rabbitmq
    published = takeaways.publish([few])
    assert "p99: too few samples" in published and not re.search(r"p99 \d", published)


def test_the_enqueue_claim_quotes_p99_only_when_every_run_has_the_calls(tmp_path):
    few, _ = write_run(tmp_path, broker="redis", n=500, seed=5)
    many, _ = write_run(tmp_path, broker="redis", n=2_000, seed=6)
    said = claims.enqueue_latency([few, many])
    assert said is not None and "p99: too few calls" in said.measured and not re.search(r"p99 \d", said.measured)
    said = claims.enqueue_latency([many])
    publish = many["figures"]["latency_ms"]["publish"]
    assert said is not None and f"p99 {sig(publish['p99'])} ms" in said.measured
    assert said.verdict.startswith("faster than claimed (p99 under 50 ms)")


def _sides(tmp_path: Path, n: int) -> dict[str, str]:
    for side, latency in (("a", 10.0), ("b", 20.0)):
        for repetition in (1, 2):
            write_run(tmp_path / side, n=n, latency_ms=latency, spread=0.1, repetition=repetition, seed=repetition)
    found = compare.verdicts([tmp_path / "a"], [tmp_path / "b"])
    return {v.figure: v.verdict for v in found}


def test_compare_cannot_tell_a_percentile_with_too_few_samples(tmp_path):
    verdicts = _sides(tmp_path / "few", n=500)
    assert verdicts["p50 ms"].startswith("B higher"), "p50 has the 20 samples it needs"
    assert verdicts["p99 ms"] == "cannot tell: too few samples (a run with n=500; it needs 1,000)"
    assert verdicts["publish p99 ms"].startswith("cannot tell: too few samples")
    assert _sides(tmp_path / "more", n=1_000)["p99 ms"].startswith("B higher"), "at the threshold it judges"
