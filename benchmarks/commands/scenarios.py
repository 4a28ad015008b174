"""``brokerbench scenario NAME`` and ``brokerbench scenarios``: run fault scenarios on private
brokers, print the table (scenario, broker, profile, lost, duplicated, recovery, expectation
met), and write it beside the results files (summary.json, summary.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from brokers import registry

from ..faults.catalog import SCENARIOS, scenario
from ..faults.common import PrivateBrokers, Row, Session
from .progress import ProgressDisplay


def _failover_columns(rows: list[Row]) -> bool:
    """Whether the table needs the replication columns (only when a row has them)."""
    return any(r.unavailable_s is not None or r.failover_s is not None for r in rows)


def unavailable_cell(seconds: Any, came_back: Any) -> str:
    """The longest stretch with nothing accepted; marked when acceptances never came back."""
    return _n(seconds) + (" (never resumed)" if came_back is False else "")


def table_markdown(rows: list[Row]) -> str:
    failover = _failover_columns(rows)
    extra = " unavailable s | failover s |" if failover else ""
    lines = [f"| scenario | broker | profile | lost | duplicated | in doubt | recovery s |{extra} expectation | met "
             "| note |",
             "|---|---|---|---:|---:|---:|---:|" + ("---:|---:|" if failover else "") + "---|---|---|"]
    for r in rows:
        cells = [r.scenario, r.who, r.profile, _n(r.lost), _n(r.duplicated), _n(r.in_doubt), _n(r.recovery_s)]
        if failover:
            cells += [unavailable_cell(r.unavailable_s, r.resumed), _n(r.failover_s)]
        cells += [r.expectation, "yes" if r.met else "**no**", r.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v}"


def print_table(rows: list[Row], console: Any) -> None:
    from rich.table import Table

    table = Table(title="brokerbench fault scenarios (private brokers, this machine)", show_lines=True)
    failover = _failover_columns(rows)
    numbers = ("lost", "dup", "in doubt", "recovery s") + (("unavailable s", "failover s") if failover else ())
    for name in ("scenario", "broker", "profile", *numbers, "expectation", "met"):
        table.add_column(name, justify="right" if name in numbers else "left")
    for r in rows:
        cells = [_n(r.lost), _n(r.duplicated), _n(r.in_doubt), _n(r.recovery_s)]
        if failover:
            cells += [unavailable_cell(r.unavailable_s, r.resumed), _n(r.failover_s)]
        table.add_row(r.scenario, r.who, r.profile, *cells, r.expectation,
                      "[green]yes[/green]" if r.met else "[red]no[/red]")
    console.print(table)
    for r in rows:
        console.print(f"[bold]{r.scenario} / {r.who} / {r.profile}[/bold]: {r.note}")


def main(argv: list[str] | None = None, *, names: list[str] | None = None) -> list[Row]:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="brokerbench scenario(s)", description=__doc__)
    if names is None:
        parser.add_argument("name", choices=list(SCENARIOS), help="the scenario (see `brokerbench scenarios --help`)")
    parser.add_argument("--small", action="store_true",
                        help="small sizes and one run per profile: what CI runs (default: full sizes)")
    parser.add_argument("--out", type=Path, help="folder (default reports/scenarios/<time>)")
    parser.add_argument("--quiet", action="store_true", help="no live progress display (default: shown)")
    parser.add_argument("--broker", action="append", choices=registry.kinds(),
                        help=f"repeat for several; default: {' and '.join(registry.compared_kinds())}")
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also run the scenarios that take contenders (worker crash, broker crash) with this "
                             "client's roles, on its server; repeat for several (see `brokerbench clients`)")
    args = parser.parse_args(argv)
    if args.client:
        from .run import check_clients

        args.client = check_clients(args.client)
    chosen = names if names is not None else [args.name]
    out = args.out or Path("reports/scenarios") / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 160)
    brokers = PrivateBrokers()
    rows: list[Row] = []
    started = time.monotonic()
    try:
        with ProgressDisplay(console, len(chosen), enabled=not args.quiet) as display:
            session = Session(brokers, small=args.small, out=out, progress=display.update,
                              kinds=args.broker or registry.compared_kinds(), clients=args.client)
            for name in chosen:
                console.print(f"[bold]scenario {name}[/bold]: {SCENARIOS[name][1]}")
                display.label(name)
                found = scenario(name)(session)
                rows += found
                for r in found:
                    console.print(f"  {r.who:8s} {r.profile:36s} lost {_n(r.lost):>6s} dup {_n(r.duplicated):>6s} "
                                  f"{'met' if r.met else '[red]NOT met[/red]'}")
    finally:
        brokers.close()
    print_table(rows, console)
    (out / "summary.json").write_text(json.dumps({"rows": [r.as_dict() for r in rows], "small": args.small,
                                                  "seconds": round(time.monotonic() - started, 1)}, indent=1))
    (out / "summary.md").write_text(table_markdown(rows))
    console.print(f"{len(rows)} rows in {time.monotonic() - started:.0f} s; results: {out}")
    return rows


def main_all(argv: list[str] | None = None) -> list[Row]:
    return main(argv, names=list(SCENARIOS))
