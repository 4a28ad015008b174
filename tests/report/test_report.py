"""The report prints the numbers that are in the results files, and rebuilds the committed
reference report from its committed results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.harness.metrics import min_samples
from benchmarks.harness.runner import run
from benchmarks.harness.scenario import Scenario
from benchmarks.results import environments, report
from benchmarks.results.percentiles import cell, q_of, sig
from tests.helpers.markdown import table as _table

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reports" / "reference"


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    out = []
    for mode in ("closed", "open"):
        result, _ = run(Scenario(broker="memory", profile="user_variables_update", mode=mode, rate=200,
                                 duration_s=0.6, warmup_s=0.1, service_factor=0.0), out=folder)
        out.append(result)
    rows = [{"scenario": "worker crash", "broker": "redis", "profile": "lock 1000 ms", "lost": 0, "duplicated": 3,
             "recovery_s": 1.2, "expectation": "lost 0", "met": True, "note": "a note", "results_file": None}]
    (folder / "summary.json").write_text(json.dumps({"rows": rows}))
    return folder, out


def test_report_numbers_are_the_results_numbers(small_results, tmp_path):
    folder, out = small_results
    path = report.build([folder], tmp_path, allow_mixed=True)  # runs of this checkout, which may be dirty
    text = path.read_text()
    closed = next(r for r in out if r["scenario"]["mode"] == "closed")
    opened = next(r for r in out if r["scenario"]["mode"] == "open")
    assert f"{closed['figures']['throughput']['out_per_s']:,.0f}" in text
    e2e, publish = (opened["figures"]["latency_ms"][k] for k in ("end_to_end_intended", "publish"))
    for figure, name in ((e2e, "p50"), (e2e, "p99"), (publish, "p99")):
        shown = cell(name, figure[name], figure["count"])
        assert f"| {shown} |" in text and f"| {figure['count']:,} |" in text
    assert "| worker crash | BullMQ-style Redis | lock 1000 ms | 0 | 3 | - | 1.2 | lost 0 | yes | a note |" in text
    assert closed["environment"]["machine"]["cpu"] in text
    for name in re.findall(r"\(plots/([\w.-]+\.png)\)", text):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html
    assert "http://" not in html and "https://" not in html.replace("https://json-schema", "")


def test_a_named_run_of_another_scenario_stays_out_of_the_headline(small_results, tmp_path):
    """A fault scenario's baseline (a named run, other settings) is not a run of the comparison:
    it must not enter, or overwrite, the headline table."""
    folder, out = small_results
    other = tmp_path / "results"
    other.mkdir()
    for path in folder.glob("*.json"):
        (other / path.name).write_text(path.read_text())
    named, _ = run(Scenario(broker="memory", profile="user_variables_update", mode="closed", concurrency=1,
                            consumers=1, duration_s=0.3, warmup_s=0.1, label="poison-baseline-memory"), out=other)
    collected = report.collect([other])
    assert [r["name"] for r in collected.labelled] == [named["name"]]
    assert named not in collected.runs and len(collected.runs) == len(out)


def test_report_refuses_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        report.build([tmp_path], tmp_path / "out")


def test_brokerbench_report_rebuilds_the_committed_reference_report(tmp_path):
    """The committed report is what ``brokerbench report`` makes of the committed results, byte
    for byte, when those come from one machine and one clean commit. Results from several
    settings are refused; built with --allow-mixed, the report names every setting at its top
    (the committed reference is such a mix until it is regenerated in one run: then this test
    holds it to the byte again)."""
    from benchmarks.commands.cli import main

    assert (REFERENCE / "report.md").exists(), "the reference report is committed"
    command = ["report", str(REFERENCE / "results"), "--out", str(tmp_path)]
    try:
        assert main(command) == 0
    except SystemExit as refused:
        assert environments.ALLOW_OPTION in str(refused) and "settings" in str(refused)
        assert main(command + [environments.ALLOW_OPTION]) == 0
        found = environments.groups(report.collect([REFERENCE / "results"]).every_file())
        text = (tmp_path / "report.md").read_text()
        assert environments.mixed(found) and environments.warning(found) in text[:text.index("## Environment")]
    else:
        assert (tmp_path / "report.md").read_text() == (REFERENCE / "report.md").read_text()
    committed = sorted(p.name for p in (REFERENCE / "plots").glob("*.png"))
    assert committed and sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == committed




def test_each_headline_cell_is_the_median_of_the_files_its_row_names(tmp_path):
    """Repeated runs of two job types, plus a fault scenario's baseline of the same job type and
    broker (other settings): every headline cell must be the median (min-max) of the files its
    row names in "Where each row comes from", a percentile only when each of those files has the
    samples it needs (else "n too small"), beside their counts; the baseline's file must be named
    by no row."""
    folder = tmp_path / "results"
    for profile in ("user_variables_update", "mix"):
        for repetition in (1, 2):
            for mode in ("closed", "open"):
                run(Scenario(broker="memory", profile=profile, mode=mode, rate=200, duration_s=0.4, warmup_s=0.1,
                             service_factor=0.0, repetition=repetition), out=folder / "runs")
    baseline, _ = run(Scenario(broker="memory", profile="mix", mode="closed", concurrency=1, consumers=1,
                               duration_s=0.3, warmup_s=0.1, service_factor=0.0, max_backlog=50,
                               label="poison-baseline-memory"), out=folder / "scenarios")
    text = report.build([folder], tmp_path / "out", allow_mixed=True).read_text()
    headline = _table(text, "| job type | broker | durability | max jobs/s")
    named = {(r["job type"], r["broker"]): r["results files (closed and open loop)"].split(", ")
             for r in _table(text, "| job type | broker | durability | results files")}
    assert len(headline) == 2 and set(named) == {(r["job type"], r["broker"]) for r in headline}
    assert not any(baseline["name"] in name for names in named.values() for name in names)
    plain = {"max jobs/s": lambda f: f["throughput"]["out_per_s"], "jobs/CPU-s": lambda f: f["jobs_per_cpu_s"]}
    latency = {"p50 ms": ("end_to_end_intended", "p50", "latency n"), "p99 ms": ("end_to_end_intended", "p99",
                                                                                 "latency n"),
               "publish p99 ms": ("publish", "p99", "publish n")}
    for row in headline:
        files = [json.loads((folder / name).read_text()) for name in named[(row["job type"], row["broker"])]]
        assert len(files) == 4 and {f["scenario"]["profile"] for f in files} == {row["job type"]}
        closed = [f["figures"] for f in files if f["scenario"]["mode"] == "closed"]
        opened = [f["figures"] for f in files if f["scenario"]["mode"] == "open"]
        for column, get in plain.items():
            values = sorted(get(f) for f in closed)
            expected = f"{(values[0] + values[1]) / 2:,.0f} ({values[0]:,.0f}-{values[-1]:,.0f})"
            assert row[column].rstrip("*") == expected, (row["job type"], column)
        for column, (histogram, name, counts) in latency.items():
            n = sorted(f["latency_ms"][histogram]["count"] for f in opened)
            assert row[counts] == (f"{n[0]:,}" if n[0] == n[-1] else f"{n[0]:,}-{n[-1]:,}")
            if n[0] < min_samples(q_of(name)):
                assert row[column] == "n too small", (row["job type"], column)
                continue
            values = sorted(f["latency_ms"][histogram][name] for f in opened)
            expected = f"{sig((values[0] + values[1]) / 2)} ({sig(values[0])}-{sig(values[-1])})"
            assert row[column].rstrip("*") == expected, (row["job type"], column)
        lost = sum(f["figures"]["lost"] for f in files)
        assert row["lost"] == f"{lost:,}"


def test_tables_name_a_runs_level_by_its_promise_and_an_older_files_level_as_old():
    """Results files keep their level string: new ones print by promise and profile, older ones
    (in-memory, durable, strict) as the old name, and the report says what the old one paired."""
    from benchmarks.results.fault_sections import node_settings
    from benchmarks.results.summary import durability_words

    def result(level: str, profile: str) -> dict:
        return {"scenario": {"broker": "redis", "durability": level},
                "durability": {"level": level, "profile": profile}}

    new, old = result("disk", "AOF always"), result("durable", "AOF everysec")
    assert durability_words(new) == "on disk: AOF always"
    assert durability_words(old) == "durable (old level): AOF everysec"
    assert durability_words({"scenario": {"durability": ""}}) == "-"
    assert "not one promise" in report.level_text([old]) and "'durable'" in report.level_text([old])
    assert report.level_text([new]).startswith("Level 'on disk': Accepted means the job was written to disk")
    replicated = {"name": "replication-leader-redis", "scenario": {"broker": "redis"},
                  "durability": {"level": "majority", "node_level": "disk",
                                 "node_server": {"appendonly": "yes", "appendfsync": "always"}}}
    assert "every node on disk (appendonly yes, appendfsync always)" in node_settings([replicated])
    assert "do not record" in node_settings([{**replicated, "durability": {}}])


def test_durability_costs_take_the_headline_mix_for_the_level_it_measured(tmp_path):
    """The reference measures 'on disk' once, in the headline: "What durability costs" reads the
    headline's mix runs for it beside the durability runs of the other levels, naming their files."""
    from tests.helpers.results_files import write_run

    written = {}
    for broker in ("redis", "rabbitmq"):
        for mode in ("closed", "open"):
            _, written[(broker, "disk", mode)] = write_run(tmp_path / "runs", broker=broker, mode=mode, n=2000,
                                                           jobs_per_s=900.0)
            _, written[(broker, "memory", mode)] = write_run(tmp_path / "durability", broker=broker, mode=mode,
                                                             n=2000, jobs_per_s=1800.0, durability="memory",
                                                             label=f"durability-memory-{broker}")
        write_run(tmp_path / "runs", broker=broker, profile="user_variables_update", mode="closed")
    text = report.build([tmp_path], tmp_path / "out").read_text()
    section = text[text.index("## What durability costs"):]
    rows = _table(section, "| job type | broker | durability | max jobs/s")
    assert {(r["broker"], r["durability"].split(":")[0], r["max jobs/s"]) for r in rows} == {
        (b, level, f"{jobs:,.0f}") for b in ("BullMQ-style Redis", "RabbitMQ")
        for level, jobs in (("on disk", 900), ("from memory", 1800))}
    files = " ".join(r["results files (closed and open loop)"] for r in _table(section, "| job type | broker | "
                                                                                         "durability | results files"))
    for path in written.values():
        assert path.name in files
    assert "user_variables_update" not in section[:section.index("##", 3)]


def test_a_report_of_short_windows_says_it_is_a_quick_look(tmp_path):
    from benchmarks.results.report import length_note

    def run(mode: str, window: float) -> dict:
        return {"scenario": {"mode": mode}, "figures": {"window_s": window}}

    quick = length_note([run("closed", 2.0), run("open", 2.5)])
    assert quick.startswith("A quick look, not the reference") and "closed loop 2 s, open loop 2.5 s" in quick
    assert "quick look" in length_note([run("closed", 30.0), run("open", 59.0)])
    full = length_note([run("closed", 30.0), run("closed", 30.2), run("open", 60.0)])
    assert "quick look" not in full and "closed loop 30-30.2 s, open loop 60 s" in full
    assert length_note([]) == ""
