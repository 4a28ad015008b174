"""``brokerbench run``: one scenario, a scenario file, or (no arguments) the default comparison.

The default comparison is the product's main job: both adapters, the mix and each job type
alone, each measured twice: closed loop (maximum throughput, backlog bounded) and open loop at
a fixed rate (latency without coordinated omission). It ends with a summary table and the
folder of its results files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from .progress import ProgressDisplay
from .runner import run
from .scenario import MODES, Scenario, load_scenarios
from .workloads import HEAVY, PROFILES, STATS, USER_VARS

# Open-loop rates that both brokers sustain on a 2-core machine with the default consumers.
DEFAULT_RATES = {"mix": 300.0, HEAVY: 120.0, USER_VARS: 500.0, STATS: 100.0}
DEFAULT_BROKERS = ("redis", "rabbitmq")


def default_suite(brokers: tuple[str, ...] = DEFAULT_BROKERS, scale: float = 1.0) -> list[Scenario]:
    """Closed + open loop for every profile and broker. ``scale`` shortens every run (tests)."""
    out = []
    for profile in ("mix", HEAVY, USER_VARS, STATS):
        for broker in brokers:
            out.append(Scenario(broker=broker, profile=profile, mode="closed", duration_s=5 * scale,
                                warmup_s=1 * scale, drain_timeout_s=20, label=f"{broker}-{profile}-closed"))
            out.append(Scenario(broker=broker, profile=profile, mode="open", rate=DEFAULT_RATES[profile],
                                duration_s=5 * scale, warmup_s=1.5 * scale, drain_timeout_s=20,
                                burst_every_s=min(2.0, 2.0 * scale), label=f"{broker}-{profile}-open"))
    return out


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (profile, broker): closed-loop throughput beside open-loop latency."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        sc, f = r["scenario"], r["figures"]
        row = rows.setdefault((sc["profile"], sc["broker"]), {"profile": sc["profile"], "broker": sc["broker"]})
        if f is None:
            row["error"] = "; ".join(r["errors"])
            continue
        row["lost"] = row.get("lost", 0) + f["lost"]
        row["duplicated"] = row.get("duplicated", 0) + f["duplicated"]
        if r["errors"]:
            row["error"] = "; ".join(r["errors"])
        if sc["mode"] == "closed":
            row["max_jobs_per_s"] = f["throughput"]["out_per_s"]
            row["jobs_per_cpu_s"] = f["jobs_per_cpu_s"]
        elif sc["mode"] == "open":
            e2e = f["latency_ms"]["end_to_end_intended"]
            row["rate"] = f["throughput"]["in_per_s"]
            row["p50_ms"], row["p99_ms"], row["p999_ms"] = e2e.get("p50"), e2e.get("p99"), e2e.get("p99_9")
            row["publish_p99_ms"] = f["latency_ms"]["publish"].get("p99")
    return list(rows.values())


SUMMARY_HEADER = ["job type", "broker", "max jobs/s", "jobs/CPU-s", "open loop in/s", "p50 ms", "p99 ms",
                  "p99.9 ms", "publish p99 ms", "lost", "dup"]


def fmt(value: Any, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def summary_cells(row: dict[str, Any], broker: str, rate_unit: str = "") -> list[str]:
    """One summary row as text, in SUMMARY_HEADER's order (console table and report alike)."""
    return [row["profile"], broker, fmt(row.get("max_jobs_per_s")), fmt(row.get("jobs_per_cpu_s")),
            fmt(row.get("rate"), "{:,.0f}" + rate_unit), fmt(row.get("p50_ms"), "{:.1f}"),
            fmt(row.get("p99_ms"), "{:.1f}"), fmt(row.get("p999_ms"), "{:.1f}"),
            fmt(row.get("publish_p99_ms"), "{:.2f}"), fmt(row.get("lost")), fmt(row.get("duplicated"))]


def print_summary(rows: list[dict[str, Any]], folder: Path | None, console: Any) -> None:
    from rich.table import Table

    table = Table(title="brokerbench: BullMQ-style Redis vs RabbitMQ (this machine, this run)")
    for name in SUMMARY_HEADER:
        table.add_column(name, justify="left" if name in ("job type", "broker") else "right")
    for row in rows:
        table.add_row(*summary_cells(row, row["broker"], rate_unit="/s"))
    console.print(table)
    console.print("closed loop: as fast as producers can while the backlog stays bounded (throughput); "
                  "open loop: fixed rate, latency measured from each job's intended send time.")
    for row in rows:
        if row.get("error"):
            console.print(f"[red]{row['profile']} on {row['broker']}: {row['error']}[/red]")
    if folder is not None:
        console.print(f"results: {folder}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brokerbench run", description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", action="append", choices=("redis", "rabbitmq", "memory"),
                   help="repeat for several; default: redis and rabbitmq")
    p.add_argument("--profile", choices=tuple(PROFILES), help="job type alone, or mix")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--scenario", type=Path, help="a JSON or TOML file of scenarios (overrides the rest)")
    p.add_argument("--out", type=Path, help="results folder (default reports/runs/<time>)")
    p.add_argument("--url", help="broker URL (default: found by brokers.provision)")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    for f in fields(Scenario):
        if f.name in ("broker", "profile", "mode", "broker_options", "sweep_rates", "label", "execution"):
            continue
        kind = type(f.default) if f.default is not None else int
        p.add_argument("--" + f.name.replace("_", "-"), type=kind if kind in (int, float) else str,
                       dest=f.name, default=None)
    p.add_argument("--sweep-rates", help="comma-separated rates for a sweep")
    p.add_argument("--broker-option", action="append", default=[], metavar="KEY=JSON",
                   help="adapter option, e.g. confirms=\"each\" or queue_type=\"quorum\"")
    return p


def scenarios_from_args(args: argparse.Namespace) -> list[Scenario]:
    if args.scenario:
        return load_scenarios(args.scenario)
    overrides = {f.name: getattr(args, f.name) for f in fields(Scenario)
                 if getattr(args, f.name, None) is not None and f.name not in ("broker", "profile", "mode")}
    if args.sweep_rates:
        overrides["sweep_rates"] = tuple(float(r) for r in args.sweep_rates.split(","))
    if args.broker_option:
        overrides["broker_options"] = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.broker_option)}
    if not (args.profile or args.mode or overrides):
        return default_suite(tuple(args.broker or DEFAULT_BROKERS))
    brokers = args.broker or list(DEFAULT_BROKERS)
    base = {"profile": args.profile or "mix", "mode": args.mode or "closed", **overrides}
    return [Scenario(broker=b, **base) for b in brokers]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    scenarios = scenarios_from_args(args)
    folder = args.out or Path("reports/runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    console = Console(width=None if sys.stdout.isatty() else 150)
    results, started = [], time.monotonic()
    with ProgressDisplay(console, len(scenarios), enabled=not args.quiet) as display:
        for scenario in scenarios:
            display.begin(scenario)
            result, path = run(scenario, url=args.url, out=folder, progress=display.update)
            display.end(result, path)
            results.append(result)
    print_summary(summary_rows(results), folder, console)
    console.print(f"{len(results)} runs in {time.monotonic() - started:.0f} s")
    return results
