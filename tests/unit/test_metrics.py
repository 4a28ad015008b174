"""The one-pass histogram summary gives exactly what hdrh's own (slow) methods give."""

from __future__ import annotations

import random

import pytest

from benchmarks.harness import metrics


def _hdrh_summary(hist):
    count = hist.get_total_count()
    if not count:
        return {"count": 0}
    out = {"count": count, "mean": round(hist.get_mean_value() / 1000, 3)}
    for name, p in metrics.PERCENTILES.items():
        out[name] = round(hist.get_value_at_percentile(p) / 1000, 3)
    out["max"] = round(hist.get_max_value() / 1000, 3)
    return out


def _histogram(seed: int):
    rng = random.Random(seed)
    hist = metrics.new_histogram()
    for _ in range(rng.randint(1, 3000)):
        metrics.record_us(hist, int(rng.lognormvariate(rng.uniform(6, 18), rng.uniform(0.1, 3))))
    if seed % 3 == 0:  # the extremes of the range
        metrics.record_us(hist, 0)
        metrics.record_us(hist, 10 ** 16)
    return hist


@pytest.mark.parametrize("seed", range(12))
def test_summary_and_recorded_values_match_hdrhs_own(seed):
    hist = metrics.decode(metrics.encode(_histogram(seed)))  # as the report reads them back
    assert metrics.summary(hist) == _hdrh_summary(hist)
    assert metrics.recorded(hist) == [(i.value_iterated_to, i.count_at_value_iterated_to)
                                      for i in hist.get_recorded_iterator()]
    for p in (0, 0.1, 50, 99.99, 100):
        assert metrics.value_at_percentile(hist, p) == hist.get_value_at_percentile(p)


def test_an_empty_histogram_has_a_count_only():
    hist = metrics.new_histogram()
    assert metrics.summary(hist) == {"count": 0}
    assert metrics.recorded(hist) == []


@pytest.mark.parametrize("q, needed", [(50, 20), (90, 100), (99, 1_000), (99.9, 10_000), (99.99, 100_000),
                                       (100, 1)])
def test_a_percentile_needs_ten_samples_beyond_it(q, needed):
    assert metrics.min_samples(q) == needed
    assert not metrics.printable(q, needed - 1) and metrics.printable(q, needed), "the boundary is n = 10 / (1 - q)"


def test_a_percentile_whose_sample_count_is_unknown_is_never_printable():
    assert not metrics.printable(50, None)


def test_the_count_of_a_summary_comes_from_it_or_from_its_histogram():
    hist = _histogram(5)
    n = hist.get_total_count()
    assert metrics.count_of(metrics.summary(hist)) == n
    without = {k: v for k, v in metrics.summary(hist).items() if k != "count"}  # an older writer's summary
    assert metrics.count_of(without, metrics.encode(hist)) == n
    assert metrics.count_of(without) is None
