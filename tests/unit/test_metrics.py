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
