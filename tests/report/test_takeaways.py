"""The report's takeaways say what their numbers say (and nothing when the numbers are not
there); the new plots draw from the committed reference results; file names shorten honestly."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from benchmarks.harness.metrics import encode, new_histogram, record_us
from benchmarks.results import report, scenario_plots, sources, takeaways

REFERENCE = Path(__file__).resolve().parents[2] / "reports" / "reference" / "results"


def _run(kind: str, profile: str, mode: str, *, out: float = 0.0, p50: float = 1.0, publish_ms: list[float] = ()):
    hist = new_histogram()
    for ms in publish_ms:
        record_us(hist, int(ms * 1_000_000))
    return {"scenario": {"broker": kind, "profile": profile, "mode": mode, "label": ""},
            "figures": {"throughput": {"out_per_s": out, "in_per_s": out},
                        "latency_ms": {"end_to_end_intended": {"count": 100, "p50": p50}, "publish": {}}},
            "histograms": {"overall": {"publish": encode(hist), "end_to_end_intended": encode(hist)}}}


def test_publish_counts_the_calls_over_the_seeds_50_ms():
    runs = [_run("redis", "mix", "open", publish_ms=[1.0] * 10 + [80.0, 120.0]),
            _run("rabbitmq", "mix", "open", publish_ms=[2.0] * 5)]
    text = takeaways.publish(runs)
    assert "BullMQ-style Redis: 2 of 12 calls over 50 ms" in text
    assert "RabbitMQ: 0 of 5 calls over 50 ms" in text


def test_throughput_explains_the_gap_only_when_the_runs_show_the_pattern():
    def runs(ratios: dict[str, float]) -> list[dict]:
        out = []
        for i, (profile, ratio) in enumerate(ratios.items()):
            p50 = 10.0 ** i   # job length grows in this order
            out += [_run("redis", profile, "closed", out=100 * ratio), _run("rabbitmq", profile, "closed", out=100),
                    _run("redis", profile, "open", p50=p50), _run("rabbitmq", profile, "open", p50=p50)]
        return out

    narrowing = takeaways.throughput(runs({"a": 1.5, "b": 1.3, "c": 1.1}))
    assert "x1.10 (c) to x1.50 (a)" in narrowing and "narrows as jobs get longer" in narrowing
    assert "narrows" not in takeaways.throughput(runs({"a": 1.1, "b": 1.5, "c": 1.3}))
    assert takeaways.throughput([]) == ""


def test_cite_lists_few_files_and_globs_many_with_their_count():
    assert sources.cite(["runs/a.json", "runs/b.json"]) == "runs/a.json, runs/b.json"
    names = [f"runs/redis-mix-open-r{i}-20261202-14330{i}.json" for i in range(1, 4)]
    assert sources.cite(names) == "runs/redis-mix-open-r*-20261202-14330*.json (3 files)"
    assert sources.of({"results_file": "reports/reference/results/scenarios/x.json"}) == "scenarios/x.json"


@pytest.fixture(scope="module")
def reference():
    return report.collect([REFERENCE])


@pytest.mark.parametrize("draw", [scenario_plots.memory_under_backpressure, scenario_plots.recovery_against_lock,
                                  scenario_plots.delay_lateness])
def test_scenario_plots_draw_from_the_reference_and_skip_what_is_missing(reference, draw):
    assert isinstance(draw(reference.faults), Figure)
    assert draw([]) is None


def test_the_recovery_takeaway_names_bullmqs_defaults_measured(reference):
    crashes = [r for r in reference.faults if r["name"].startswith("worker-crash")]
    longest = max(r["fault"]["recovery_last_s"] for r in crashes)
    text = takeaways.recovery(reference.faults)
    assert f"back after {longest:.1f} s with a 30 s lock" in text


def _sweep(kind: str, p99s: list[float], best: float) -> dict:
    steps = [{"offered_rate": 200.0 * 1.5 ** i, "sustainable": True,
              "figures": {"latency_ms": {"end_to_end_intended": {"p99": p99, "count": 5000}}}}
             for i, p99 in enumerate(p99s)]
    steps.append({"offered_rate": 200.0 * 1.5 ** len(p99s), "sustainable": False, "figures": None})
    return {"scenario": {"broker": kind, "profile": "mix", "mode": "sweep", "label": ""},
            "figures": {"throughput": {"out_per_s": best}}, "steps": steps, "max_sustainable_rate": best}


def test_the_sweep_sentence_reads_its_own_curve():
    flat = takeaways.sweep([_sweep("redis", [5.0, 5.5, 6.0], 450.0)])
    assert "p99 stayed flat" in flat and "5.0 -> 6.0 ms" in flat and "450" in flat
    rising = takeaways.sweep([_sweep("rabbitmq", [78.0, 200.0, 451.0], 675.0)])
    assert "stayed flat" not in rising and "rose x5.8" in rising and "78.0 -> 451.0 ms" in rising
    # repeated sweeps: the median of the best rates with its range
    three = takeaways.sweep([_sweep("redis", [5.0, 6.0], r) for r in (300.0, 450.0, 675.0)])
    assert "450 (300-675) jobs/s" in three and "(3 sweeps)" in three
    assert takeaways.sweep([]) == ""


def _closed(kind: str, consumers: int, out: float) -> dict:
    return {"scenario": {"broker": kind, "profile": "mix", "mode": "closed", "consumers": consumers,
                         "label": f"scaling-{consumers}"},
            "figures": {"throughput": {"out_per_s": out}}, "environment": {"machine": {"cores": 2}}}


def test_the_scaling_sentence_explains_only_what_its_curve_shows():
    linear = takeaways.scaling([_closed(k, n, 100.0 * n) for k in ("redis", "rabbitmq") for n in (1, 2, 4)])
    assert "close to linearly" in linear and "x4.00" in linear and "compete" not in linear
    flat = takeaways.scaling([_closed(k, n, 100.0 + n) for k in ("redis", "rabbitmq") for n in (1, 2, 4)])
    assert "compete for the same CPU" in flat and "linearly" not in flat
    mixed = takeaways.scaling([_closed("redis", n, 100.0 * n) for n in (1, 4)]
                              + [_closed("rabbitmq", n, 100.0) for n in (1, 4)])
    assert "scale differently" in mixed and "compete" not in mixed and "linearly" not in mixed
    # repetitions: medians with their range
    reps = takeaways.scaling([_closed("redis", 1, y) for y in (90.0, 100.0, 110.0)]
                             + [_closed("redis", 4, y) for y in (350.0, 400.0, 390.0)])
    assert "100 (90-110) -> 390 (350-400) jobs/s" in reps
def _cost(kind: str, profile: str, jobs: float, level: str | None = None, node_level: str | None = None) -> dict:
    """A closed-loop cost run of the replication scenario (``level`` None: an older file)."""
    run = {"scenario": {"broker": kind, "profile": "mix", "mode": "closed", "label": f"replication-cost-closed-{kind}"},
           "fault": {"cost_mode": "closed", "profile": profile, "topology": "one node"},
           "figures": {"throughput": {"out_per_s": jobs}}}
    if level is not None:
        run["durability"] = {"level": level, "profile": profile, "node_level": node_level}
    return run


def test_the_cost_of_copies_is_read_against_one_node_at_the_same_promise_and_says_which():
    """Each replicated setting against the one-node rows whose nodes keep what its nodes keep (on
    disk), naming them; a one-node row at another level is no baseline."""
    faults = [_cost("redis", "one node, no persistence", 3000, "memory", "memory"),
              _cost("redis", "one node, AOF always", 1000, "disk", "disk"),
              _cost("redis", "WAIT 1", 800, "majority", "disk"),
              _cost("rabbitmq", "one node, classic + confirms", 1500, "disk", "disk"),
              _cost("rabbitmq", "one node, quorum + confirms", 1000, "disk:quorum", "disk"),
              _cost("rabbitmq", "quorum queue + confirms (3 replicas)", 900, "majority", "disk")]
    text = takeaways.replication_cost(faults)
    assert "WAIT 1 (on a majority): x0.80 the jobs/s of 'one node, AOF always'" in text
    assert ("quorum queue + confirms (3 replicas) (on a majority): x0.60 the jobs/s of 'one node, classic + "
            "confirms' and x0.90 the jobs/s of 'one node, quorum + confirms'") in text
    assert "no persistence" not in text and "x0.27" not in text
    assert "keeps what each of its nodes keeps (on disk)" in text


def test_older_cost_files_without_levels_say_so():
    text = takeaways.replication_cost([_cost("redis", "one node, no replicas", 1000),
                                       _cost("redis", "WAIT 1", 500)])
    assert "WAIT 1: x0.50 the jobs/s of 'one node, no replicas'" in text
    assert "do not record what each node kept" in text


def _level_run(kind: str, level: str, mode: str, value: float) -> dict:
    figures = {"throughput": {"out_per_s": value}, "latency_ms": {"publish": {"p99": value / 1000}}}
    return {"scenario": {"broker": kind, "profile": "mix", "mode": mode, "durability": level,
                         "label": f"durability-{level.replace(':', '-')}-{kind}"},
            "durability": {"level": level, "profile": f"{kind} at {level}"}, "figures": figures}


def test_the_durability_takeaway_names_levels_by_promise_and_says_what_is_not_paired():
    each = {"redis": ("memory", "second", "disk"), "rabbitmq": ("memory", "disk", "disk:quorum")}
    runs = [_level_run(kind, level, mode, value) for kind, levels in each.items()
            for value, level in zip((4000, 3000, 2000), levels) for mode in ("closed", "open")]
    text = takeaways.durability(runs)
    assert "'on disk' (redis at disk): 2,000 jobs/s" in text
    assert "'on disk': x0.50 the jobs/s of 'from memory'" in text
    assert "'within ~1 s, Redis only' has no RabbitMQ bar" in text
    assert "'on disk (quorum)' is RabbitMQ's second profile with the promise 'on disk'" in text
