"""``brokerbench run``: one scenario, a scenario file, or (no arguments) the default comparison.

The default comparison is the product's main job: every compared broker, the mix and each job
type alone, each measured twice: closed loop (maximum throughput, backlog bounded) and open
loop at a fixed rate (latency without coordinated omission); see
:mod:`benchmarks.harness.suite`. Scenario files name workloads; each runs on every selected
broker. Every broker runs at one durability level, named by what "accepted" promises
(``--durability``, default "disk": see :mod:`benchmarks.harness.durability`); a broker with no
profile at the level sits it out and the run says so. Every cell runs ``--repeat`` times, interleaved
across brokers and workloads (A B A B..., so drift hits all alike). It ends with a summary
table (medians with min-max, noisy cells flagged, the ratio between the brokers per repetition
pair), the folder of its results files, and a report (report.md, report.html) in that folder.
``--pin-cpus`` runs brokers and clients on separate CPUs (:mod:`benchmarks.harness.pinning`):
only a broker brokerbench started can be pinned, so it then starts private brokers where it
would otherwise use shared ones.
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

from brokers import clients, registry

from ..harness import pinning
from ..harness.durability import DurabilityUnavailable, Placement, pairing, place
from ..harness.runner import run
from ..harness.scenario import MODES, Scenario, load_scenarios
from ..harness.suite import default_workloads
from ..harness.workloads import PROFILES
from ..results.summary import (
    NOISY_NOTE,
    SAMPLES_NOTE,
    SUMMARY_HEADER,
    ratio_rows,
    ratio_text,
    summary_cells,
    summary_rows,
    who,
)
from .progress import ProgressDisplay

DEFAULT_REPEAT = 3
SHORT = {"heavy_workflow_execution": "heavy workflow", "user_variables_update": "user variables",
         "statistics_aggregation": "statistics"}

# Help for the scenario's own fields (one line each: what, unit, default).
FIELD_HELP = {
    "rate": "open loop and sweeps: jobs/s offered in all (default %(default)s)",
    "duration_s": "measured window, seconds (default: 10, or the default comparison's)",
    "warmup_s": "seconds before the window, not counted (default 2)",
    "producers": "producer processes (default 1)",
    "consumers": "consumer (worker) processes (default 2)",
    "concurrency": "jobs each consumer runs at once (default 16)",
    "prefetch": "AMQP prefetch per consumer (default: the concurrency)",
    "publish_batch": "jobs per publish call (default: 1 open loop, 50 closed loop)",
    "time_scale": "job durations x this (default 0.01: a 2 s heavy job takes 20 ms)",
    "service_factor": "x the job's work; 0 makes no-op jobs (default 1)",
    "seed": "random seed of the workload (default 1)",
    "drain_jobs": "drain mode: jobs pre-filled before consumers start (default 5000)",
    "max_backlog": "closed loop: jobs allowed in the broker at once (default 2000)",
    "drain_timeout_s": "seconds consumers get to finish after the window (default 30)",
    "sweep_factor": "sweep: rate x this each step (default 1.5)",
    "sweep_max_steps": "sweep: at most this many steps (default 8)",
    "p99_limit_ms": "sweep: a step whose p99 is above this, in ms, is not sustainable (default 1000)",
    "burst_every_s": "open loop: a burst of jobs every this many seconds (default 2)",
    "poison_share": "share of jobs that always fail, 0-1 (default 0)",
    "malformed_share": "share of raw non-JSON messages written past the producer, 0-1 (default 0)",
    "repetition": "(set by --repeat)",
}


def print_summary(results: list[dict[str, Any]], folder: Path | None, console: Any) -> None:
    from rich.table import Table

    rows = summary_rows(results)
    kinds = list(dict.fromkeys(r["broker"] for r in rows))
    names = [registry.get(k).label for k in kinds] + [f"{registry.get(r['broker']).label} via {r['client']}"
                                                       for r in rows if r.get("client")]
    table = Table(title="brokerbench: " + " vs ".join(dict.fromkeys(names)) + " (this machine, this run)")
    for name in SUMMARY_HEADER:
        table.add_column(name, justify="left" if name in ("job type", "broker", "durability") else "right")
    for row in rows:
        cells = summary_cells(row, who(row), rate_unit="/s", sep="\n")
        table.add_row(SHORT.get(cells[0], cells[0]), *cells[1:])
    console.print(table)
    console.print("closed loop: as fast as producers can while the backlog stays bounded (throughput); "
                  "open loop: fixed rate, latency measured from each job's intended send time.")
    console.print(SAMPLES_NOTE + ".")
    if any(r.get("repetitions", 0) > 1 for r in rows):
        console.print(NOISY_NOTE)
    if len(kinds) == 2:
        labels = [registry.get(k).label for k in kinds]
        for line in ratio_text(ratio_rows(results, *kinds), *labels):
            console.print(line)
    for row in rows:
        if row.get("error"):
            console.print(f"[red]{row['profile']} on {row['broker']}: {row['error']}[/red]")
    if folder is not None:
        console.print(f"results: {folder}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brokerbench run", description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", action="append", choices=registry.kinds(),
                   help=f"broker kind; repeat for several (default: {' and '.join(registry.compared_kinds())})")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="client library whose producers and workers run; repeat for several, each on its own "
                        "server, interleaved: a broker kind's name for our adapter (redis, rabbitmq), or a "
                        "contender: " + ", ".join(f"{c.name} ({c.label}, on {c.server})" for c in clients.contenders())
                        + " (default: our adapter on every --broker). `brokerbench clients` lists them and installs "
                          "what they need")
    p.add_argument("--profile", choices=tuple(PROFILES),
                   help="one job type alone, or mix (default: the default comparison's four)")
    p.add_argument("--mode", choices=MODES, help="closed, open, sweep or drain (default: closed and open)")
    p.add_argument("--durability", type=durability_level, default=registry.DEFAULT_DURABILITY, metavar="LEVEL",
                   help="what 'accepted' means on every broker: " + "; ".join(
                       f"{k}: {level.label}" for k, level in registry.LEVELS.items())
                   + "; disk:quorum: on disk, RabbitMQ's quorum queue on one node (default %(default)s)")
    p.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, metavar="K",
                   help="runs of every cell, interleaved across brokers (default %(default)s)")
    p.add_argument("--scenario", type=Path, help="a JSON or TOML file of scenarios (overrides the rest; default none)")
    p.add_argument("--out", type=Path, help="results folder (default reports/runs/<time>)")
    p.add_argument("--url", help="broker URL (default: found by brokers.provision, or a private broker that "
                                 "runs the durability level)")
    p.add_argument("--quiet", action="store_true", help="no live progress display (default: shown)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.md and report.html into the results folder (default: written)")
    p.add_argument("--pin-cpus", action="store_true",
                   help="broker on the first quarter of the CPUs (at least one), clients on the rest; starts "
                        "private brokers, since a shared one is never pinned (default: off, every CPU shared)")
    p.add_argument("--awake-cpus", action="store_true",
                   help="hold every CPU out of idle states while a run measures (PM QoS on /dev/cpu_dma_latency, "
                        "needs root), so round trips do not pay a virtual machine's wake-ups (default: off)")
    for f in fields(Scenario):
        if f.name in ("broker", "profile", "mode", "broker_options", "sweep_rates", "label", "execution",
                      "durability", "repetition", "pin_cpus", "client", "awake_cpus"):
            continue
        kind = type(f.default) if f.default is not None else int
        p.add_argument("--" + f.name.replace("_", "-"), type=kind if kind in (int, float) else str,
                       dest=f.name, default=None, help=FIELD_HELP.get(f.name, "(see Scenario)").replace(
                           "%(default)s", str(f.default)))
    p.add_argument("--sweep-rates", help="sweep: comma-separated rates in jobs/s (default: rate x sweep-factor)")
    p.add_argument("--broker-option", action="append", default=[], metavar="KEY=JSON",
                   help="adapter option over the durability level's, e.g. confirms=\"each\" (default none)")
    return p


def check_clients(names: list[str]) -> list[str]:
    """``--client`` values, each known and able to start here; else a SystemExit saying what is
    unknown or what to install."""
    for name in names:
        try:
            clients.get(name).check_available()
        except (ValueError, clients.ClientUnavailable) as exc:
            raise SystemExit(f"brokerbench run: {exc}") from None
    return list(dict.fromkeys(names))


def durability_level(text: str) -> str:
    """``--durability``'s value, checked: a level key, or an error naming the levels (and, for an
    old name, what it meant)."""
    try:
        registry.check_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def workloads_from_args(args: argparse.Namespace) -> list[Scenario]:
    """What to run: a file's workloads, the default comparison, or one workload from the options
    (bound to no broker yet, unless a file's workload names one)."""
    if args.scenario:
        return load_scenarios(args.scenario)
    overrides = {f.name: getattr(args, f.name) for f in fields(Scenario)
                 if getattr(args, f.name, None) is not None
                 and f.name not in ("broker", "profile", "mode", "durability", "repetition", "pin_cpus", "client",
                                    "awake_cpus")}
    if args.sweep_rates:
        overrides["sweep_rates"] = tuple(float(r) for r in args.sweep_rates.split(","))
    if args.broker_option:
        overrides["broker_options"] = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.broker_option)}
    if not (args.profile or args.mode or overrides):
        return default_workloads()
    return [Scenario(profile=args.profile or "mix", mode=args.mode or "closed", **overrides)]


def plan(workloads: list[Scenario], placements: dict[tuple[str, str], Placement], repeat: int,
         level: str = registry.DEFAULT_DURABILITY, client_names: list[str] | None = None) -> list[Scenario]:
    """Every workload on every placed broker, ``repeat`` times: repetition 1 of everything, then
    2, ... and within one, the brokers alternate (A B A B...), and on one broker its clients
    (``client_names`` that speak to it; none named: our adapter). A workload runs at its own
    durability level (a scenario file may set one per scenario), else at ``level``; on a broker
    not placed at that level (it sits the level out: see :func:`~benchmarks.harness.durability.pairing`)
    it does not run."""
    kinds = list(dict.fromkeys(kind for kind, _ in placements))
    out = []
    for rep in range(1, repeat + 1):
        for workload in workloads:
            for kind in [workload.broker] if workload.broker else kinds:
                where = placements.get((kind, workload.durability or level))
                if where is None:
                    continue
                names = [c for c in client_names or () if clients.get(c).server == kind] or [workload.client]
                for name in names:
                    bound = where.bind(workload).with_(repetition=rep if repeat > 1 else 0)
                    out.append(bound.with_(client="" if name == kind else name))
    return out


def needed(workloads: list[Scenario], kinds: list[str], level: str) -> list[tuple[str, str]]:
    """The (broker kind, durability level) pairs the workloads run on, in order of first use."""
    return list(dict.fromkeys((kind, w.durability or level) for w in workloads
                              for kind in ([w.broker] if w.broker else kinds)))


QUICK_LOOK = ("A quick look, not the reference: windows of 2-2.5 s, measured on this machine now. "
              "`brokerbench reference` runs the reference (30 s closed / 60 s open windows, every part of "
              "the report, one commit); see README.")


def own_broker(where: Placement) -> Placement:
    """For pinning: a broker brokerbench started, since only such a broker may be pinned.
    ``where`` itself when it is already a private instance (or the broker lives in the
    harness's process), else a private instance with the same server settings (the found
    broker is left alone). When none can be started, ``where`` as it is, saying why: the
    clients alone are then pinned, and each results file says so."""
    driver = registry.get(where.kind)
    made = driver.server_class()
    if where.instance is not None or driver.in_process or made is None:
        return where
    server = {k: str(v) for k, v in (where.profile.server if where.profile else {}).items()}
    try:
        instance = made(config=server).start()
    except Exception as exc:  # noqa: BLE001 - say why, pin the clients only
        where.how += f"; no private instance could be started to pin ({exc}): only the clients are pinned"
        return where
    return Placement(where.kind, where.level, where.profile, instance.url, instance,
                     how="a private instance, started so that it can be pinned (--pin-cpus); the found broker "
                         "is left alone")


def run_workloads(workloads: list[Scenario], kinds: list[str], level: str, repeat: int, folder: Path,
                  console: Any, *, url: str | None = None, quiet: bool = False,
                  pin_cpus: bool = False, client_names: list[str] | None = None,
                  awake_cpus: bool = False) -> list[dict[str, Any]]:
    """Run ``workloads`` on every kind in ``kinds`` (a workload bound to a broker: on that one),
    each ``repeat`` times interleaved (see :func:`plan`), every broker at its durability level;
    private brokers started for a level are stopped before it returns. ``pin_cpus`` puts the
    broker (then always one brokerbench started) and the clients on CPUs of their own
    (:mod:`benchmarks.harness.pinning`); ``awake_cpus`` holds every CPU out of idle states while
    each run measures (:mod:`benchmarks.harness.cpu_idle`). Returns the results in the order they ran; each also
    went to a results file in ``folder``."""
    placements: dict[tuple[str, str], Placement] = {}
    results: list[dict[str, Any]] = []
    pin = pin_cpus or any(w.pin_cpus for w in workloads)
    try:
        try:
            paired = pairing(needed(workloads, kinds, level))
        except DurabilityUnavailable as exc:
            raise SystemExit(f"brokerbench run: {exc}") from exc
        for note in paired.notes():
            console.print(note)
        for kind, lvl in paired.placed:
            try:
                where = placements[(kind, lvl)] = place(kind, lvl, url)
            except DurabilityUnavailable as exc:
                raise SystemExit(f"brokerbench run: {exc}") from exc
            if pin and url is None:
                where = placements[(kind, lvl)] = own_broker(where)
            console.print(f"{registry.get(kind).label}: durability {where.label}; {where.how}")
        scenarios = plan(workloads, placements, repeat, level, client_names)
        if awake_cpus:
            scenarios = [s.with_(awake_cpus=True) for s in scenarios]
        if pin_cpus:
            scenarios = [s.with_(pin_cpus=True) for s in scenarios]
            console.print("CPU pinning: " + pinning.plan(True, broker_ours=True).why
                          + " (a broker brokerbench did not start is never pinned)")
        with ProgressDisplay(console, len(scenarios), enabled=not quiet) as display:
            for scenario in scenarios:
                display.begin(scenario)
                where = placements.get((scenario.broker, scenario.durability))
                result, path = run(scenario, url=where.url if where else url, out=folder,
                                   progress=display.update, extra={"durability": where.describe()} if where else None)
                display.end(result, path)
                results.append(result)
    finally:
        for where in placements.values():
            where.close()
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    workloads = workloads_from_args(args)
    client_names = check_clients(args.client or [])
    servers = list(dict.fromkeys(clients.get(c).server for c in client_names))
    unbound_kinds = list(args.broker or servers or registry.compared_kinds())
    if client_names and set(servers) - set(unbound_kinds):
        raise SystemExit(f"brokerbench run: --client {', '.join(client_names)} needs --broker "
                         f"{', '.join(sorted(set(servers) - set(unbound_kinds)))} too")
    folder = args.out or Path("reports/runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    console = Console(width=None if sys.stdout.isatty() else 200)
    quick = not args.scenario and all(w.duration_s < 30 for w in workloads)
    if quick:
        console.print(QUICK_LOOK)
    started = time.monotonic()
    results = run_workloads(workloads, unbound_kinds, args.durability, args.repeat, folder, console,
                            url=args.url, quiet=args.quiet, pin_cpus=args.pin_cpus, client_names=client_names,
                            awake_cpus=args.awake_cpus)
    print_summary(results, folder, console)
    console.print(f"{len(results)} runs in {time.monotonic() - started:.0f} s")
    if quick:
        console.print(QUICK_LOOK)
    if results and not args.no_report:
        from ..results import report

        # Its own files (one commit); a dirty tree or older files in --out are said at the report's top.
        path = report.build([folder], folder, allow_mixed=True)
        console.print(f"report: {path} and {path.with_suffix('.html')}")
    return results
