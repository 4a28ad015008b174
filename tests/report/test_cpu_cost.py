"""The broker's CPU apart from the clients': per-job figures and what bound a run, as results
files record them (or as derived for older files), and the headline, the report's section and
the >100,000/s verdict, each checked against the files they read."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from benchmarks.results import claims, cost_section, cpu_cost, plots, report, sources
from benchmarks.results.summary import SUMMARY_HEADER, summary_rows

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "reports" / "reference" / "results" / "runs"


def _figures(broker: float | None, producers: float, consumers: float, harness: float = 0.0, *, jobs: int = 4000,
             window: float = 2.0, busy: dict[str, float] | None = None) -> dict:
    cpu = {"broker": broker, "producers": producers, "consumers": consumers, "harness": harness,
           "clients": round(producers + consumers, 3)}
    out = {"window_s": window, "jobs_in_window": jobs, "throughput": {"out_per_s": jobs / window}, "cpu_s": cpu}
    if busy is not None:
        out["cpu_busy"] = busy
    return out


PINNED = {"broker": [0], "clients": [1], "cores": 2, "why": "test"}


def test_cpu_per_1000_jobs_and_jobs_per_broker_cpu_s_follow_cpu_s_and_jobs():
    figures = _figures(0.4, 0.3, 2.7, 0.1, jobs=5000)
    got = cpu_cost.derive(figures, None, 2)
    per = got["cpu_per_1000_jobs"]
    assert per["broker"] == pytest.approx(0.4 / 5000 * 1000)
    assert per["clients"] == pytest.approx(3.0 / 5000 * 1000)
    assert per["producers"] == pytest.approx(0.3 / 5) and per["consumers"] == pytest.approx(2.7 / 5)
    assert per["harness"] == pytest.approx(0.1 / 5)
    assert got["jobs_per_broker_cpu_s"] == pytest.approx(5000 / 0.4, abs=0.1)
    u = got["utilisation"]
    assert u["broker"] == pytest.approx(0.4 / (2.0 * 2)) and u["clients"] == pytest.approx(3.1 / (2.0 * 2))
    assert u["broker_cpus"] == u["client_cpus"] == 2 and "unpinned" in u["cpus"]
    pinned = cpu_cost.derive(figures, PINNED, 2)["utilisation"]
    assert pinned["broker"] == pytest.approx(0.4 / 2.0) and pinned["clients"] == pytest.approx(3.1 / 2.0, abs=1e-3)
    assert pinned["broker_cpus"] == pinned["client_cpus"] == 1 and pinned["cpus"] == "pinned sets"
    unknown = cpu_cost.derive(_figures(None, 0.3, 1.0), None, 2)
    assert unknown["cpu_per_1000_jobs"]["broker"] is None and unknown["jobs_per_broker_cpu_s"] is None
    assert unknown["bound_by"].startswith("unknown")
    assert cpu_cost.derive(_figures(0.4, 0.3, 1.0, jobs=0), None, 2)["cpu_per_1000_jobs"]["broker"] is None


@pytest.mark.parametrize("broker, producers, consumers, pinning, busy, expected", [
    (1.8, 0.2, 0.5, PINNED, None, "broker"),                       # 90 % of its one CPU
    (0.3, 0.2, 1.6, PINNED, None, "clients"),                      # 90 % of theirs
    (1.8, 0.2, 1.6, PINNED, None, "broker and clients"),
    (0.3, 0.2, 0.5, PINNED, None, "neither"),
    (1.2, 0.2, 0.5, PINNED, {"0": 0.9, "1": 0.3}, "broker"),       # its CPU full, 60 % of it its own work
    (0.3, 0.2, 0.5, PINNED, {"0": 0.95, "1": 0.3}, "other work"),  # its CPU full, mostly with other work
    (0.3, 0.2, 1.4, PINNED, {"0": 0.95, "1": 0.9}, "clients"),     # theirs full with their work, the broker's not
    (0.3, 0.2, 0.5, PINNED, {"0": 0.95, "1": 0.96}, "other work"),
    (0.4, 0.3, 3.0, None, None, "shared CPUs"),                    # together 92 % of 2 CPUs, neither alone
    (3.5, 0.1, 0.1, None, None, "broker"),
    (0.4, 0.3, 2.0, None, {"0": 0.97, "1": 0.97}, "shared CPUs"),  # 68 % theirs of 97 % busy
    (0.4, 0.3, 1.0, None, {"0": 0.97, "1": 0.97}, "other work"),   # 43 % theirs of 97 % busy
    (0.4, 0.3, 1.0, None, None, "neither"),
])
def test_bound_by_names_the_side_whose_cpus_were_full(broker, producers, consumers, pinning, busy, expected):
    cost = cpu_cost.derive(_figures(broker, producers, consumers, busy=busy), pinning, 2)
    assert cost["bound_by"].split(" (")[0] == expected, cost
    if expected == "shared CPUs" and busy is None:
        u = cost["utilisation"]
        assert f"clients {u['clients']:.0%}".replace("%", " %") in cost["bound_by"]
        assert f"broker {u['broker']:.0%}".replace("%", " %") in cost["bound_by"]


def test_an_older_results_file_is_read_by_deriving_from_its_cpu_seconds():
    path = sorted(RUNS.glob("rabbitmq-mix-closed-*.json"))[0]
    result = older(json.loads(path.read_text()))
    f = result["figures"]
    cost = cpu_cost.of(result)
    jobs = round(f["throughput"]["out_per_s"] * f["window_s"])
    assert cost.jobs == jobs
    assert cost.per_1000["broker"] == pytest.approx(f["cpu_s"]["broker"] / jobs * 1000, rel=1e-3)
    assert cost.per_1000["clients"] == pytest.approx(f["cpu_s"]["clients"] / jobs * 1000, rel=1e-3)
    assert cost.jobs_per_broker_cpu_s == pytest.approx(jobs / f["cpu_s"]["broker"], abs=0.1)
    cores = result["environment"]["machine"]["cores"]
    assert cost.utilisation["broker"] == pytest.approx(f["cpu_s"]["broker"] / (f["window_s"] * cores), abs=1e-3)


RECORDED_SINCE = ("jobs_in_window", "cpu_per_1000_jobs", "jobs_per_broker_cpu_s", "utilisation", "bound_by",
                  "cpu_busy")


def older(result: dict) -> dict:
    """``result`` as a file written before the CPU cost fields were recorded."""
    for key in RECORDED_SINCE:
        result["figures"].pop(key, None)
    result["figures"]["cpu_s"].pop("harness", None)
    result["environment"].pop("cpu_pinning", None)
    return result


def _copy_runs(folder: Path) -> list[Path]:
    """The reference's closed-loop mix runs of both brokers, copied to be read (and edited)."""
    folder.mkdir(parents=True)
    copied = []
    for path in sorted(RUNS.glob("*-mix-closed-*.json")):
        shutil.copy(path, folder / path.name)
        copied.append(folder / path.name)
    return copied


def _table(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[at + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _expected(files: list[dict], get, pattern: str) -> str:
    values = sorted(get(f) for f in files)
    return f"{pattern.format(statistics.median(values))} ({pattern.format(values[0])}-{pattern.format(values[-1])})"


def test_headline_and_cost_section_numbers_are_those_of_the_files(tmp_path):
    copied = _copy_runs(tmp_path / "results" / "runs")
    for path in copied:  # read as files that record only CPU-seconds: every figure is derived
        path.write_text(json.dumps(older(json.loads(path.read_text()))))
    edited = json.loads(copied[0].read_text())  # one run's broker now used twice the CPU
    edited["figures"]["cpu_s"]["broker"] *= 2
    copied[0].write_text(json.dumps(edited))
    text = report.build([tmp_path / "results"], tmp_path / "out").read_text()
    at = {name: i for i, name in enumerate(SUMMARY_HEADER)}
    headline = _table(text, "| job type | broker | durability | max jobs/s")
    section = _table(text, "| " + " | ".join(cost_section.HEADER[:4]))
    assert len(headline) == 2 and len(section) == 2
    by_label: dict[str, list[dict]] = {}
    for path in copied:
        result = json.loads(path.read_text())
        result["name_in_report"] = f"runs/{path.name}"
        by_label.setdefault(plots.label(result["scenario"]["broker"]), []).append(result)

    def jobs(f: dict) -> int:
        return round(f["throughput"]["out_per_s"] * f["window_s"])

    for row, cost_row in zip(headline, section, strict=True):
        files = by_label[row[1]]
        figures = [f["figures"] for f in files]
        assert len(files) == 3 and cost_row[:3] == row[:3]
        assert row[at["jobs/broker CPU-s"]].rstrip("*") == _expected(
            figures, lambda f: round(jobs(f) / f["cpu_s"]["broker"], 1), "{:,.0f}")
        assert cost_row[4].rstrip("*") == _expected(
            figures, lambda f: round(f["cpu_s"]["broker"] / jobs(f) * 1000, 4), "{:.3f}")
        assert cost_row[5].rstrip("*") == _expected(
            figures, lambda f: round(f["cpu_s"]["clients"] / jobs(f) * 1000, 4), "{:.3f}")
        assert cost_row[6] == row[at["jobs/broker CPU-s"]]
        assert row[at["bound by"]] == cost_row[9] == cpu_cost.bound_summary([cpu_cost.of(f) for f in files])
        assert cost_row[10] == sources.cite(f["name_in_report"] for f in files)
    assert "What each job costs: broker vs client CPU" in text
    rows = summary_rows([json.loads(p.read_text()) for p in copied])
    doubled = next(r for r in rows if r["broker"] == edited["scenario"]["broker"])
    f = edited["figures"]
    assert doubled["spread"]["jobs_per_broker_cpu_s"].low == pytest.approx(
        round(round(f["throughput"]["out_per_s"] * f["window_s"]) / f["cpu_s"]["broker"], 1)), \
        "the run whose broker used twice the CPU gives the row's lowest jobs per broker CPU-second"


def _closed(broker: str, level: str, broker_cpu: float, jobs: int = 4000) -> dict:
    return {"scenario": {"broker": broker, "mode": "closed", "profile": "mix", "durability": level},
            "durability": {"level": level, "profile": f"{level} profile"},
            "figures": _figures(broker_cpu, 0.3, 2.5, jobs=jobs), "environment": {"machine": {"cores": 2}}}


def test_the_100k_verdict_counts_broker_cores_from_the_files_broker_cpu():
    runs = [_closed("rabbitmq", "durable", cpu) for cpu in (1.0, 1.25, 1.6)] + [_closed("redis", "durable", 0.4)]
    costs = [_closed("rabbitmq", "strict", 2.0)]
    claim = claims.rabbitmq_per_second(runs, [], costs)
    assert claim is not None
    # 4,000 jobs per 1.25 broker CPU-s (the median) = 3,200/s: 100,000/s needs 31 cores; 4,000 / 1.0 and
    # 4,000 / 1.6 give the spread; at 'strict' 4,000 / 2.0 = 2,000/s: 50 cores; Redis 10,000/s: 10.
    assert "RabbitMQ: about 31 (25-40) at 'durable' (durable profile), about 50 at 'strict'" in claim.verdict
    assert "Redis: about 10 at 'durable'" in claim.verdict
    assert "3,200 (2,500-4,000)" in claim.measured
    assert claims.PUBLISHED_URL in claim.verdict and "88,534 msg/s" in claim.verdict
    for run in runs[:3]:
        run["figures"]["cpu_s"]["broker"] *= 2
    doubled = claims.rabbitmq_per_second(runs, [], costs)
    assert "RabbitMQ: about 62 (50-80) at 'durable'" in doubled.verdict, "twice the broker CPU, twice the cores"
    assert claims.broker_cores([_closed("rabbitmq", "durable", 0.0)]) == [], "no broker CPU, no core count"
