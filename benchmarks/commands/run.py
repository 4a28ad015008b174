"""``brokerbench run``: one scenario, a scenario file, or (no arguments) the default comparison.

The default comparison is the product's main job: every compared broker, the mix and each job
type alone, each measured twice: closed loop (maximum throughput, backlog bounded) and open
loop at a fixed rate (latency without coordinated omission); see
:mod:`benchmarks.harness.suite`. Scenario files name workloads; each runs on every selected
broker. It ends with a summary table and the folder of its results files.
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

from brokers import registry

from ..harness.runner import run
from ..harness.scenario import MODES, Scenario, load_scenarios
from ..harness.suite import default_workloads, on_brokers
from ..harness.workloads import PROFILES
from ..results.summary import SUMMARY_HEADER, summary_cells, summary_rows
from .progress import ProgressDisplay


def print_summary(rows: list[dict[str, Any]], folder: Path | None, console: Any) -> None:
    from rich.table import Table

    table = Table(title="brokerbench: " + " vs ".join(registry.get(k).label for k in registry.compared_kinds())
                  + " (this machine, this run)")
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
    p.add_argument("--broker", action="append", choices=registry.kinds(),
                   help=f"repeat for several; default: {' and '.join(registry.compared_kinds())}")
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
    """What to run: a file's workloads, the default comparison, or one workload from the options,
    each on every selected broker."""
    kinds = args.broker or registry.compared_kinds()
    if args.scenario:
        return on_brokers(load_scenarios(args.scenario), kinds)
    overrides = {f.name: getattr(args, f.name) for f in fields(Scenario)
                 if getattr(args, f.name, None) is not None and f.name not in ("broker", "profile", "mode")}
    if args.sweep_rates:
        overrides["sweep_rates"] = tuple(float(r) for r in args.sweep_rates.split(","))
    if args.broker_option:
        overrides["broker_options"] = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.broker_option)}
    if not (args.profile or args.mode or overrides):
        return on_brokers(default_workloads(), kinds)
    return on_brokers([Scenario(profile=args.profile or "mix", mode=args.mode or "closed", **overrides)], kinds)


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
