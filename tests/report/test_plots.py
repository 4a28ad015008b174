"""The report's plots say what they draw: each names, under its title, the durability each side
ran (read from the files drawn, never assumed); legends key the colours the bars are drawn in;
recovery against lock names both settings it changes. Drawn from the committed reference results
and small hand-made files: no broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from benchmarks.results import cost_section, plots, promises, report, scenario_plots
from brokers import registry

REFERENCE = Path(__file__).resolve().parents[2] / "reports" / "reference" / "results"


@pytest.fixture(scope="module")
def reference():
    return report.collect([REFERENCE])


def _durability_line(fig: Figure) -> str:
    said = [t.get_text() for t in fig.texts if t.get_text().startswith("Durability")]
    assert len(said) == 1, [t.get_text() for t in fig.texts]
    return said[0].replace("\n", " ")


def _expected_level(result: dict) -> str:
    """The level label a results file gives for its side: its durability section's, else the one
    of the profile its recorded broker settings match."""
    said = result.get("durability") or {}
    if said.get("level"):
        return registry.level_label(said["level"])
    kind = result["scenario"]["broker"]
    profile = registry.get(kind).recorded_profile(result["environment"]["brokers"][kind])
    assert profile is not None, result["name"]
    return registry.level_label(profile.level)


def _plots(collected) -> dict[str, tuple[Figure | None, list[dict]]]:
    crash = next(r for r in collected.faults if r["name"].startswith("worker-crash") and r.get("events"))
    leader = next(r for r in collected.faults if r["name"].startswith("replication-leader") and r.get("figures"))
    costs = report.durability_runs(collected)
    return {
        "throughput": (plots.throughput_by_type(collected.runs), collected.runs),
        "latency-percentiles": (plots.latency_percentiles(collected.runs), collected.runs),
        "latency-cdf": (plots.latency_cdf(collected.runs), collected.runs),
        "publish-latency": (scenario_plots.publish_histogram(collected.runs), collected.runs),
        "cpu-per-job": (cost_section.cpu_per_job(collected.runs), collected.runs),
        "durability-cost": (scenario_plots.durability_cost(costs), costs),
        "durability-cpu-per-job": (cost_section.cpu_per_job(costs), costs),
        "latency-vs-load": (plots.latency_vs_load(collected.sweeps), collected.sweeps),
        "scaling": (plots.scaling_with_consumers(collected.scaling), collected.scaling),
        "recovery-vs-lock": (scenario_plots.recovery_against_lock(collected.faults), collected.faults),
        "memory-backpressure": (scenario_plots.memory_under_backpressure(collected.faults), collected.faults),
        "delay-lateness": (scenario_plots.delay_lateness(collected.faults), collected.faults),
        "replication-cost": (plots.replication_cost(collected.faults), collected.faults),
        "timeline": (plots.timeline(crash), [crash]),
        "failover": (plots.failover_timeline(leader), [leader]),
    }


def test_every_plot_names_its_durability_under_its_title(reference):
    for name, (fig, _) in _plots(reference).items():
        assert fig is not None, name
        assert _durability_line(fig), name


@pytest.mark.parametrize("part", ["sweeps", "scaling"])
def test_sweep_and_scaling_name_each_sides_level_from_their_files(reference, part):
    results = getattr(reference, part)
    fig = plots.latency_vs_load(results) if part == "sweeps" else plots.scaling_with_consumers(results)
    line = _durability_line(fig)
    assert line == promises.line(results)
    levels = {}
    for r in results:
        levels.setdefault(r["scenario"]["broker"], set()).add(_expected_level(r))
    for kind, found in levels.items():
        assert plots.label(kind) in line
        assert all(f"'{level}'" in line for level in found), (kind, found, line)
    if len({level for found in levels.values() for level in found}) > 1:
        assert "NOT the same" in line


def test_the_profile_read_from_recorded_settings_is_the_one_files_name(reference):
    """Where a reference file names its durability profile, the broker settings it recorded
    (which older files and fault scenarios have alone) lead to the same profile."""
    checked = 0
    for r in reference.everything():
        kind, said = r["scenario"]["broker"], r.get("durability") or {}
        driver = registry.get(kind)
        if said.get("profile") in {p.name for p in driver.durability}:
            found = driver.recorded_profile(r["environment"]["brokers"][kind])
            assert found is not None and found.name == said["profile"], r["name"]
            checked += 1
    assert checked


def _run(kind: str, described: dict, durability: dict | None = None) -> dict:
    out = {"name": f"{kind}-mix-closed", "scenario": {"broker": kind, "profile": "mix", "mode": "closed"},
           "environment": {"brokers": {kind: described}}}
    if durability:
        out["durability"] = durability
    return out


REDIS_AOF_ALWAYS = {"aof_enabled": True, "config": {"appendfsync": "always", "save": ""}}
REDIS_NONE = {"aof_enabled": False, "config": {"appendfsync": "everysec", "save": ""}}
RABBIT_DISK = {"producer_persistent": True, "producer_confirms": "windowed", "queue_type": "classic"}


def test_the_durability_line_reads_the_files_and_says_when_the_sides_differ():
    on_disk = [_run("redis", REDIS_AOF_ALWAYS, {"level": "disk", "profile": "AOF always"}),
               _run("rabbitmq", RABBIT_DISK, {"level": "disk", "profile": "persistent + confirms"})]
    assert promises.line(on_disk) == ("Durability 'on disk': RabbitMQ persistent + confirms / BullMQ-style Redis "
                                      "AOF always")
    older = [_run("redis", REDIS_NONE), _run("rabbitmq", RABBIT_DISK)]  # no durability section: the settings say
    line = promises.line(older)
    assert line.startswith("Durability NOT the same on both sides: ")
    assert "BullMQ-style Redis 'from memory' (no persistence)" in line
    assert "RabbitMQ 'on disk' (persistent + confirms)" in line and promises.FROM_SETTINGS in line
    unknown = promises.line([_run("redis", {"aof_enabled": True, "config": "unavailable (CONFIG disabled)"})])
    assert "level not recorded" in unknown


def _bar_colours(ax) -> set[tuple]:
    return {tuple(round(c, 3) for c in patch.get_facecolor()) for patch in ax.patches}


def test_replication_costs_legend_keys_each_brokers_own_bar_colours(reference):
    fig = plots.replication_cost(reference.faults)
    right = fig.axes[1]
    legend = right.get_legend()
    names = [t.get_text() for t in legend.get_texts()]
    bars = _bar_colours(right)
    kinds = {r["scenario"]["broker"] for r in reference.faults if r.get("fault", {}).get("cost_mode")}
    assert {f"{plots.label(k)} {p}" for k in kinds for p in ("p50", "p99")} <= set(names)
    for name, handle in zip(names, legend.legend_handles):
        kind = next(k for k in kinds if name.startswith(plots.label(k)))
        colour = tuple(round(c, 3) for c in handle.get_facecolor())
        assert colour in bars, name
        assert colour[:3] == tuple(round(c, 3) for c in to_rgba(plots.colour(kind))[:3]), name


def test_cpu_per_jobs_legend_keys_brokers_by_their_colour_and_parts_in_grey(reference):
    fig = cost_section.cpu_per_job(reference.runs)
    legend = fig.axes[0].get_legend()
    keyed = {t.get_text(): h.get_facecolor()[:3] for t, h in zip(legend.get_texts(), legend.legend_handles)}
    for kind in {r["scenario"]["broker"] for r in reference.runs}:
        assert keyed[plots.label(kind)] == to_rgba(plots.colour(kind))[:3]
    assert keyed["broker"] == to_rgba(plots.NEUTRAL)[:3]


def test_no_mark_wears_a_brokers_colour():
    colours = {d.colour.lower() for d in registry.drivers()}
    assert plots.EVENT_COLOUR.lower() not in colours and plots.MARK_COLOUR.lower() not in colours


def test_recovery_against_lock_names_both_settings_of_each_point(reference):
    fig = scenario_plots.recovery_against_lock(reference.faults)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    crashes = {(r["scenario"]["broker_options"]["lock_duration_ms"],
                r["scenario"]["broker_options"].get("stalled_interval_ms", 30000))
               for r in reference.faults if r["name"].startswith("worker-crash")
               and "lock_duration_ms" in r["scenario"]["broker_options"]}
    assert len(ticks) == len(crashes)
    for lock, check in crashes:
        assert any(f"lock {lock / 1000:g} s" in t and f"check {check / 1000:g} s" in t for t in ticks), (lock, check)
    assert "lock duration / stalled-job check interval" in ax.get_xlabel()


def test_the_report_draws_no_picture_of_the_reliability_table(reference, tmp_path):
    from benchmarks.results import fault_sections

    plot_dir = tmp_path / "plots"
    plot_dir.mkdir()
    blocks = fault_sections.blocks(reference, plot_dir)
    assert any(b.kind == "table" and "met" in b.header for b in blocks)  # the table stays, as text
    assert not (plot_dir / "reliability.png").exists()
    assert not hasattr(plots, "reliability_table")
