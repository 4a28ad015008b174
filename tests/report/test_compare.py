"""``brokerbench compare A B`` judges differences against the noise of both sides, and the summary
gives medians with their spread and per-repetition ratios. Fed synthetic results files whose
figures and histograms are known."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.harness import environment
from benchmarks.harness.metrics import Recorder, record_us
from benchmarks.harness.scenario import Scenario
from benchmarks.results import compare, files
from benchmarks.results.summary import ratio_rows, summary_rows


def synthetic(folder: Path, *, broker: str, mode: str, repetition: int, jobs_per_s: float,
              latency_ms: float, spread: float = 0.1, n: int = 4000, seed: int = 0) -> dict:
    """A results file as a run would write it: ``jobs_per_s`` finished (closed loop) or ``n``
    end-to-end latencies spread uniformly over latency_ms x (1 +- spread) (open loop)."""
    rng = random.Random(seed)
    recorder = Recorder()
    if mode == "open":
        for _ in range(n):
            value_ms = latency_ms * (1 + spread * (2 * rng.random() - 1))
            for name in ("end_to_end_intended", "publish"):
                record_us(recorder.hists[name], int(value_ms * 1e6))
    figures = files.figures(recorder, window_s=5.0, cpu={"broker": 1.0, "producers": 1.0, "consumers": 1.0},
                            timeline={"t_s": [], "sent_per_s": [], "done_per_s": [], "backlog_t_s": [], "backlog": []},
                            worker_counts={})
    figures["throughput"] = {"in_per_s": jobs_per_s, "out_per_s": jobs_per_s}
    figures["jobs_per_cpu_s"] = round(jobs_per_s * 5 / 3, 1)
    scenario = Scenario(broker=broker, profile="mix", mode=mode, rate=300, durability="disk",
                        repetition=repetition).to_dict()
    result = files.build(scenario, status="ok", errors=[], environment=environment.capture(), measured=figures,
                         hist=files.histograms(recorder), started=datetime.now(timezone.utc))
    files.write(result, folder)
    return result


def make_side(folder: Path, throughputs: list[float], latency_ms: float, seed: int) -> list[dict]:
    out = []
    for i, jobs in enumerate(throughputs, start=1):
        out.append(synthetic(folder, broker="redis", mode="closed", repetition=i, jobs_per_s=jobs, latency_ms=0))
        out.append(synthetic(folder, broker="redis", mode="open", repetition=i, jobs_per_s=300,
                             latency_ms=latency_ms, seed=seed + i))
    return out


def by_figure(found: list[compare.Verdict]) -> dict[str, str]:
    return {v.figure: v.verdict for v in found if "redis mix" in v.cell}


def test_two_sets_that_differ_get_a_verdict_of_difference(tmp_path):
    make_side(tmp_path / "a", [1000, 1040, 980], latency_ms=10, seed=1)
    make_side(tmp_path / "b", [1500, 1530, 1470], latency_ms=20, seed=2)
    verdicts = by_figure(compare.verdicts([tmp_path / "a"], [tmp_path / "b"]))
    assert verdicts["jobs/s"].startswith("B higher"), verdicts
    assert verdicts["p50 ms"].startswith("B higher") and verdicts["p99 ms"].startswith("B higher"), verdicts
    assert verdicts["lost"] == "same"


def test_two_sets_that_do_not_differ_are_within_noise(tmp_path):
    make_side(tmp_path / "a", [1000, 1080, 950], latency_ms=10, seed=3)
    make_side(tmp_path / "b", [1020, 990, 1060], latency_ms=10, seed=4)
    verdicts = by_figure(compare.verdicts([tmp_path / "a"], [tmp_path / "b"]))
    assert verdicts["jobs/s"].startswith("within noise"), verdicts
    assert verdicts["p50 ms"].startswith("within noise") and verdicts["p99 ms"].startswith("within noise"), verdicts


def test_one_run_each_cannot_tell_a_throughput_difference(tmp_path):
    make_side(tmp_path / "a", [1000], latency_ms=10, seed=5)
    make_side(tmp_path / "b", [1100], latency_ms=10, seed=6)
    verdicts = by_figure(compare.verdicts([tmp_path / "a"], [tmp_path / "b"]))
    assert verdicts["jobs/s"].startswith("cannot tell"), verdicts


def test_the_percentile_interval_holds_the_percentile_and_narrows_with_more_samples(tmp_path):
    small = synthetic(tmp_path, broker="redis", mode="open", repetition=0, jobs_per_s=1, latency_ms=10, n=200)
    large = synthetic(tmp_path, broker="redis", mode="open", repetition=0, jobs_per_s=1, latency_ms=10, n=20000)
    intervals = []
    for result in (small, large):
        low, value, high = compare.percentile_interval(result["histograms"]["overall"]["end_to_end_intended"], 99)
        assert low <= value <= high
        intervals.append(high - low)
    assert intervals[1] < intervals[0]


def test_summary_gives_medians_spread_noisy_flags_and_ratios_per_repetition(tmp_path):
    redis = make_side(tmp_path, [1000, 1300, 1010], latency_ms=10, seed=7)
    rabbit = []
    for i, jobs in enumerate([500, 520, 505], start=1):
        rabbit.append(synthetic(tmp_path, broker="rabbitmq", mode="closed", repetition=i, jobs_per_s=jobs,
                                latency_ms=0))
    rows = {r["broker"]: r for r in summary_rows(redis + rabbit)}
    assert rows["redis"]["max_jobs_per_s"] == 1010 and rows["redis"]["repetitions"] == 3
    spread = rows["redis"]["spread"]["max_jobs_per_s"]
    assert (spread.low, spread.high) == (1000, 1300)
    assert "max_jobs_per_s" in rows["redis"]["noisy"], "a 30 % spread is flagged"
    assert "max_jobs_per_s" not in rows["rabbitmq"]["noisy"], "a 4 % spread is not"
    ratio = next(r for r in ratio_rows(redis + rabbit, "redis", "rabbitmq") if r["profile"] == "mix")
    pairs = sorted([1000 / 500, 1300 / 520, 1010 / 505])
    assert (ratio["max_jobs_per_s"].low, ratio["max_jobs_per_s"].high) == (pairs[0], pairs[-1])
