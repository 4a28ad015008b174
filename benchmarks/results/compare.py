"""``brokerbench compare A B``: does B differ from A beyond the noise of both, figure by figure?

A and B are results files or folders (say two ``brokerbench run`` folders, before and after a
change). Runs are matched by cell: broker, job type, mode, durability level (and the offered
rate in open loop); the repetitions of a cell are its samples. For each figure each side gets an
interval:

* throughput and jobs per CPU-second: min-max over the repetitions (one run gives no interval:
  the verdict is then "cannot tell");
* latency percentiles: for each repetition, the distribution-free 95 % interval of the
  percentile from its HDR histogram (the order statistics around rank n*q, +-1.96 sqrt(n q (1-q))),
  then the span of those over the repetitions: noise within a run and between runs both count.
  A percentile some run has too few samples for (fewer than 10 / (1 - q): p50 20, p99 1,000;
  :func:`~benchmarks.harness.metrics.min_samples`) is "cannot tell", whatever its interval says.

Intervals that do not overlap: B differs ("higher" / "lower", with the change of the medians);
intervals that overlap: "within noise". Lost and duplicated jobs are counts, not samples: any
difference is reported as it is. With one path (or more than two) it lists the files side by side.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..harness.metrics import count_of, decode, min_samples, printable, recorded, value_at_percentile
from . import files as results
from . import percentiles

Z95 = 1.96
LATENCY = {"p50 ms": ("end_to_end_intended", 50.0), "p99 ms": ("end_to_end_intended", 99.0),
           "publish p99 ms": ("publish", 99.0)}


@dataclass(frozen=True)
class Side:
    """One side's samples of one figure: the median and the interval the noise allows."""

    median: float
    low: float
    high: float
    runs: int
    interval: bool  # False: one run of a figure that has no interval of its own
    fewest: int | None = None  # percentiles: the samples of the run with the fewest (None: not a percentile)
    enough: bool = True        # percentiles: every run has the samples the percentile needs


@dataclass(frozen=True)
class Verdict:
    cell: str
    figure: str
    a: Side | None
    b: Side | None
    verdict: str


def cell_of(result: dict[str, Any]) -> str:
    sc = result["scenario"]
    rate = f" at {sc['rate']:g}/s" if sc["mode"] in ("open", "sweep") else ""
    level = sc.get("durability") or "as given"
    return f"{sc['broker']} {sc['profile']} {sc['mode']}{rate} [{level}]"


def percentile_interval(encoded: str, q: float) -> tuple[float, float, float] | None:
    """(low, value, high) in ms of percentile ``q`` (0-100) of an encoded HDR histogram."""
    found = percentile_sample(encoded, q)
    return None if found is None else found[:3]


def percentile_sample(encoded: str, q: float) -> tuple[float, float, float, int] | None:
    """(low, value, high, n): :func:`percentile_interval` and the samples it rests on."""
    hist = decode(encoded)
    n = hist.get_total_count()
    if not n:
        return None
    p = q / 100
    half = Z95 * math.sqrt(n * p * (1 - p))
    lo_rank, hi_rank = max(0.0, n * p - half), min(float(n), n * p + half)
    buckets = recorded(hist)
    low, value, high = (value_at_percentile(hist, x, buckets) / 1000
                        for x in (100 * lo_rank / n, q, min(100.0, 100 * hi_rank / n)))
    return low, value, high, n


def _samples(runs: list[dict[str, Any]]) -> dict[str, Side | int]:
    """Every figure of one side of one cell."""
    out: dict[str, Side | int] = {}
    figures = [r["figures"] for r in runs if r["figures"]]
    mode = runs[0]["scenario"]["mode"]
    plain = {"closed": {"jobs/s": lambda f: f["throughput"]["out_per_s"], "jobs/CPU-s": lambda f: f["jobs_per_cpu_s"]},
             "drain": {"jobs/s": lambda f: f["throughput"]["out_per_s"]}}.get(mode, {})
    for name, get in plain.items():
        values = [v for v in (get(f) for f in figures) if v is not None]
        if values:
            out[name] = Side(statistics.median(values), min(values), max(values), len(values), len(values) > 1)
    if mode in ("open", "sweep"):
        for name, (hist, q) in LATENCY.items():
            found = [percentile_sample(h, q) for r in runs
                     if (h := ((r.get("histograms") or {}).get("overall") or {}).get(hist))]
            found = [f for f in found if f is not None]
            if found:
                fewest = min(n for *_, n in found)
                out[name] = Side(statistics.median(v for _, v, _, _ in found), min(lo for lo, *_ in found),
                                 max(hi for _, _, hi, _ in found), len(found), True, fewest, printable(q, fewest))
    out["lost"] = sum(f["lost"] for f in figures)
    out["duplicated"] = sum(f["duplicated"] for f in figures)
    return out


def judge(a: Side, b: Side, q: float | None = None) -> str:
    """The verdict on one figure (``q``: the percentile it is, for the words of "too few")."""
    change = (b.median - a.median) / a.median * 100 if a.median else float("inf")
    if not (a.enough and b.enough):
        fewest = min(n for n in (a.fewest, b.fewest) if n is not None)
        needs = f"; it needs {min_samples(q):,}" if q is not None else ""
        return f"cannot tell: too few samples (a run with n={fewest:,}{needs})"
    if not (a.interval and b.interval):
        return f"cannot tell: one run {'each' if not (a.interval or b.interval) else 'on one side'} ({change:+.0f} %)"
    if b.low > a.high:
        return f"B higher ({change:+.0f} %)"
    if b.high < a.low:
        return f"B lower ({change:+.0f} %)"
    return f"within noise ({change:+.0f} %)"


def verdicts(a_paths: list[Path], b_paths: list[Path]) -> list[Verdict]:
    """Per cell found on both sides, per figure: A, B and the verdict."""
    def cells(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for path in expand(paths):
            r = results.load(path)
            if "fault" not in r:
                found.setdefault(cell_of(r), []).append(r)
        return found

    a_cells, b_cells = cells(a_paths), cells(b_paths)
    out: list[Verdict] = []
    for cell in [c for c in a_cells if c in b_cells]:
        a, b = _samples(a_cells[cell]), _samples(b_cells[cell])
        for name in [n for n in a if n in b]:
            x, y = a[name], b[name]
            if isinstance(x, Side) and isinstance(y, Side):
                out.append(Verdict(cell, name, x, y, judge(x, y, LATENCY[name][1] if name in LATENCY else None)))
            elif isinstance(x, int) and isinstance(y, int):
                said = "same" if x == y else f"B {'more' if y > x else 'fewer'} ({x} -> {y})"
                out.append(Verdict(cell, name, None, None, said))
    for cell in sorted(set(a_cells) ^ set(b_cells)):
        out.append(Verdict(cell, "-", None, None, "only in " + ("A" if cell in a_cells else "B")))
    return out


def rows(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        r = results.load(path)
        sc, f = r["scenario"], r["figures"] or {}
        lat = f.get("latency_ms", {})
        e2e = lat.get("end_to_end_intended" if sc["mode"] in ("open", "sweep") else "end_to_end", {})
        out.append({
            "file": path.name, "broker": sc["broker"], "profile": sc["profile"], "mode": sc["mode"],
            "durability": sc.get("durability") or "-", "repetition": sc.get("repetition", 0),
            "rate": sc["rate"] if sc["mode"] in ("open", "sweep") else None, "status": r["status"],
            "out_per_s": f.get("throughput", {}).get("out_per_s"), "p50": e2e.get("p50"), "p99": e2e.get("p99"),
            "p99_9": e2e.get("p99_9"), "n": count_of(e2e) if e2e else None,
            "publish_p99": lat.get("publish", {}).get("p99"),
            "publish_n": count_of(lat["publish"]) if lat.get("publish") else None,
            "lost": f.get("lost"), "duplicated": f.get("duplicated"), "jobs_per_cpu_s": f.get("jobs_per_cpu_s"),
            "max_sustainable_rate": r.get("max_sustainable_rate"), "created": r["created"],
        })
    return out


def expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return [f for f in files if f.name != "summary.json"]


def _side(s: Side | None) -> str:
    """One side of a verdict: median [interval] (runs); a percentile to three significant
    digits with the samples of its smallest run, or "n too small" without its value."""
    if s is None:
        return "-"
    if s.fewest is not None:
        runs = f" ({s.runs} run, n>={s.fewest:,})"
        if not s.enough:
            return "n too small" + runs
        return percentiles.sig(s.median) + f" [{percentiles.sig(s.low)}-{percentiles.sig(s.high)}]" + runs
    return f"{s.median:,.1f}" + (f" [{s.low:,.1f}-{s.high:,.1f}]" if s.interval else "") + f" ({s.runs} run)"


# The listing's percentile columns: (percentile, the column of its sample count).
LISTED = {"p50": ("p50", "n"), "p99": ("p99", "n"), "p99_9": ("p99_9", "n"), "publish_p99": ("p99", "publish_n")}


def _listed(row: dict[str, Any], column: str) -> str:
    """A cell of the runs listing: percentiles under the rule (:func:`percentiles.cell`)."""
    value = row[column]
    if value is None:
        return "-"
    if column in LISTED:
        name, counts = LISTED[column]
        return percentiles.cell(name, value, row[counts])
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if column in ("n", "publish_n") else str(value)


def main(argv: list[str] | None = None) -> list[Any]:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="brokerbench compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="A B: two results files or folders to judge; one or more than two: listed side by side")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    if len(args.paths) == 2:
        found = verdicts([args.paths[0]], [args.paths[1]])
        table = Table(title=f"A = {args.paths[0]}, B = {args.paths[1]}")
        for c in ("cell", "figure", "A: median [interval] (runs)", "B", "verdict"):
            table.add_column(c)
        for v in found:
            table.add_row(v.cell, v.figure, _side(v.a), _side(v.b), v.verdict)
        console.print(table)
        console.print("interval: min-max over repetitions; for percentiles also each run's 95 % interval from "
                      "its histogram. Intervals apart: a difference beyond the noise of both. A percentile q needs "
                      f"{min_samples(50):,} / {min_samples(99):,} samples per run (p50 / p99: 10 / (1 - q)); "
                      "with fewer it is \"cannot tell\".")
        return found
    table_rows = rows(expand(args.paths))
    table = Table(title="brokerbench runs")
    columns = ["broker", "profile", "mode", "durability", "repetition", "rate", "status", "out_per_s", "p50", "p99",
               "p99_9", "n", "publish_p99", "publish_n", "lost", "duplicated", "jobs_per_cpu_s"]
    if any(row["max_sustainable_rate"] is not None for row in table_rows):
        columns.append("max_sustainable_rate")
    for c in columns:
        table.add_column(c.replace("_", " "), no_wrap=c == "profile")
    for row in table_rows:
        table.add_row(*(_listed(row, c) for c in columns))
    console.print(table)
    return table_rows
