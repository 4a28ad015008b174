"""``brokerbench reference``: regenerate the whole reference, on one machine, at one commit.

Everything ``reports/reference/report.md`` reads is produced here, part by part, at reference
length (closed loop 30 s and open loop 60 s after a 5 s warm-up, every cell 3 times,
interleaved; see :mod:`benchmarks.harness.suite`), then the report is rebuilt from it. Each part
writes into its own folder under ``<out>/results/`` and is recorded in ``<out>/reference.json``
(the commit and machine it ran on, how long it took), so that:

* the plan printed first gives each part's estimated time (the last measured time of that part
  when the manifest has one, else an estimate from its windows) and the whole;
* ``--resume`` skips parts already finished on this machine at this commit (a session cut short
  goes on where it stopped); a part run again first empties its own folder, so no folder ever
  mixes commits;
* the harness parts but scaling pin the broker (a private one, started for the run) and the
  clients to CPUs of their own (``--no-pin`` leaves them together), so each side's CPU per job
  is its own; scaling is never pinned (its consumer processes need every CPU open to them);
* every harness part holds the CPUs out of idle states while a run measures (``--no-awake`` lets
  them sleep; :mod:`benchmarks.harness.cpu_idle` says why a VM's wake-ups would otherwise be
  measured);
* a tree with uncommitted changes to code is refused (``--allow-dirty`` for trying the command
  out): results must name the code that made them. "Code" is everything outside ``reports/``
  (:func:`benchmarks.harness.environment.git_commit`): the results this command writes there,
  and a commit of some of them, change neither the commit the next part names nor ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from brokers import registry

from ..harness import environment
from ..harness.scenario import Scenario
from ..harness.suite import (
    REFERENCE_REPEAT,
    contender_workloads,
    durability_workloads,
    reference_workloads,
    scaling_workloads,
    sweep_workload,
)

MANIFEST = "reference.json"
STARTUP_S = 4.0            # per harness run: role processes, broker connections, the drain
# "disk" itself is the headline's level: the report reads the headline's mix runs for it
DURABILITY_LEVELS = ("memory", "second", "disk:quorum")


@dataclass(frozen=True)
class Options:
    """What every part is given: where to write, how long, on which brokers."""

    scale: float = 1.0                   # 1 = reference length; tests shorten it
    repeat: int = REFERENCE_REPEAT
    kinds: tuple[str, ...] = ()          # harness parts: the brokers compared (default: registry's)
    small: bool = False                  # fault scenarios at CI size (tests only)
    pin_cpus: bool = True                # harness parts: broker and clients on CPUs of their own
    awake_cpus: bool = True              # harness parts: CPUs held out of idle states (harness.cpu_idle)


@dataclass(frozen=True)
class Part:
    """One piece of the reference: a folder of results files and the command that fills it."""

    name: str                                        # its folder under results/
    what: str
    run: Callable[[Path, Options, Any], None]        # (folder, options, console)
    estimate_s: Callable[[Options], float]           # before any measured time exists

    def describe(self) -> str:
        return f"{self.name}: {self.what}"


# ------------------------------------------------------------------------------- the parts
def _harness_seconds(workloads: list[Scenario], options: Options, kinds: int = 2) -> float:
    """Windows + warm-ups + a start-up allowance, for every repetition on every broker."""
    one = sum(w.warmup_s + w.duration_s * (w.sweep_max_steps if w.mode == "sweep" else 1) + STARTUP_S
              for w in workloads)
    return one * options.repeat * kinds


def _kinds(options: Options) -> list[str]:
    return list(options.kinds or registry.compared_kinds())


def _harness(workloads: Callable[[Options], list[Scenario]], level: str = "disk",
             pin: bool = True) -> Callable[..., None]:
    """A part made of harness runs. ``pin`` False: never pinned (scaling asks whether more
    consumer processes help, which needs every CPU open to them)."""
    def run(folder: Path, options: Options, console: Any) -> None:
        from .run import run_workloads

        run_workloads(workloads(options), _kinds(options), level, options.repeat, folder, console, quiet=True,
                      pin_cpus=options.pin_cpus and pin, awake_cpus=options.awake_cpus)
    return run


def _durability_levels(options: Options) -> list[Scenario]:
    out = []
    for level in DURABILITY_LEVELS:
        for workload in durability_workloads([level], options.scale):
            # a level one kind has no profile for is run on the kinds that have one (Redis alone
            # writes "within a second"; quorum on one node is RabbitMQ's)
            kinds = [k for k in _kinds(options) if _has_level(k, level)]
            out += [workload.on(k) for k in kinds]
    return out


def _has_level(kind: str, level: str) -> bool:
    driver = registry.get(kind)
    if not driver.durability:
        return level == "disk"
    try:
        driver.at_level(level)
    except ValueError:
        return False
    return True


def _contender_names(options: Options, console: Any = None) -> list[str]:
    """The real clients (official libraries) of the reference's servers that can run here,
    then our own adapters, which run beside them; a contender that cannot start is left out
    and said so."""
    from brokers import clients

    names = []
    for client in clients.contenders():
        if not client.official or client.server not in _kinds(options):
            continue
        try:
            client.check_available()
        except clients.ClientUnavailable as exc:
            if console is not None:
                console.print(f"reference: {client.label} left out: {exc}")
            continue
        names.append(client.name)
    return names + _kinds(options)


def _contenders(folder: Path, options: Options, console: Any) -> None:
    from .run import run_workloads

    run_workloads(contender_workloads(options.scale), _kinds(options), "disk", options.repeat, folder, console,
                  quiet=True, pin_cpus=options.pin_cpus, client_names=_contender_names(options, console),
                  awake_cpus=options.awake_cpus)


def _command(target: str, argv: Callable[[Path, Options], list[str]]) -> Callable[..., None]:
    def run(folder: Path, options: Options, console: Any) -> None:
        from .cli import _load

        _load(target)(argv(folder, options))
    return run


def _scenarios(names: list[str]) -> Callable[..., None]:
    def run(folder: Path, options: Options, console: Any) -> None:
        from .scenarios import main

        argv = ["--out", str(folder), "--quiet"] + (["--small"] if options.small else [])
        for kind in options.kinds:
            argv += ["--broker", kind]
        main(argv, names=names)
    return run


def _fault_names() -> list[str]:
    from ..faults.catalog import SCENARIOS

    return [n for n in SCENARIOS if n != "replication"]


PARTS: tuple[Part, ...] = (
    Part("runs", "the headline: the mix and each job type, closed 30 s and open 60 s, acknowledged on disk",
         _harness(lambda o: reference_workloads(o.scale)),
         lambda o: _harness_seconds(reference_workloads(o.scale), o, len(_kinds(o)))),
    Part("durability", "the mix at the other promises: from memory, within a second (Redis), quorum on one node "
                       "(on disk: the headline's mix)",
         _harness(_durability_levels),
         lambda o: _harness_seconds(_durability_levels(o), o, 1)),
    Part("sweep", "the mix at rising rates until a step is not sustainable (15 s steps), on disk",
         _harness(lambda o: [sweep_workload(o.scale)]),
         lambda o: _harness_seconds([sweep_workload(o.scale)], o, len(_kinds(o)))),
    Part("scaling", "the mix, closed loop, 1, 2 and 4 consumer processes, on disk, not pinned",
         _harness(lambda o: scaling_workloads(o.scale), pin=False),
         lambda o: _harness_seconds(scaling_workloads(o.scale), o, len(_kinds(o)))),
    Part("scenarios", "every fault scenario on private brokers, full size",
         _scenarios(_fault_names()), lambda o: 900.0 * (0.3 if o.small else 1.0)),
    Part("replication", "a leader lost under load on replicated brokers, and what the copies cost",
         _scenarios(["replication"]), lambda o: 1200.0 * (0.3 if o.small else 1.0)),
    Part("contenders", "the real clients beside ours (BullMQ on Node and Python, amqplib, plain pika): the mix "
                       "closed and open (30 s each), a drain of no-op jobs added one per call (the drain and enqueue "
                       "benchmarks as runs), no-op jobs end to end at 1,000/s (the latency benchmark), on disk",
         _contenders, lambda o: _harness_seconds(contender_workloads(o.scale), o, 1)
         * max(len(_contender_names(o)), 1)),
    Part("setup", "start-up time and declared objects of each broker",
         _command("benchmarks.commands.setup_cost:main", lambda f, o: ["--out", str(f)]), lambda o: 150.0),
    Part("experiments", "are RabbitMQ's acks durable when nothing more is received",
         _command("benchmarks.experiments.acks_after_crash:main", lambda f, o: ["--out", str(f)]), lambda o: 300.0),
)


# Parts an older reference ran that no longer exist, and what measures the same now: a committed
# reference made before may still hold their folders.
RETIRED_PARTS = {"drain": "contenders (its drain runs)", "enqueue": "contenders (its drain runs' fill)",
                 "latency": "contenders (its latency runs)"}


def part(name: str) -> Part:
    for p in PARTS:
        if p.name == name:
            return p
    raise ValueError(f"unknown part {name!r}; parts: {', '.join(p.name for p in PARTS)}")


# ------------------------------------------------------------------------------- manifest
def where_we_are() -> dict[str, Any]:
    """The machine and code a part runs on: parts are resumed only where all of it matches."""
    env = environment.capture()
    m = env["machine"]
    return {"cpu": m["cpu"], "cores": m["cores"], "memory_gib": m["memory_gib"], "os": m["os"],
            "git_commit": env["git_commit"]}


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    if not path.exists():
        return {"parts": {}}
    return json.loads(path.read_text())


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def estimate(p: Part, options: Options, manifest: dict[str, Any]) -> tuple[float, str]:
    """Seconds this part should take, and where the figure comes from."""
    done = manifest.get("parts", {}).get(p.name)
    if done and done.get("seconds") and done.get("scale") == options.scale:
        return float(done["seconds"]), "measured last time"
    return p.estimate_s(options), "estimated"


def _hm(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


# ------------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brokerbench reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("reports/reference"),
                   help="folder of the report; results go to <out>/results/<part> (default %(default)s)")
    p.add_argument("--only", action="append", metavar="PART", help="run only these parts (repeat; default all)")
    p.add_argument("--skip", action="append", default=[], metavar="PART", help="leave these parts as they are")
    p.add_argument("--resume", action="store_true",
                   help="skip parts the manifest says finished on this machine at this commit")
    p.add_argument("--list", action="store_true", help="print the plan with its estimated times and stop")
    p.add_argument("--allow-dirty", action="store_true",
                   help="run from a tree with uncommitted changes (the report will say so; not for the reference)")
    p.add_argument("--no-report", action="store_true", help="do not rebuild report.md / report.html at the end")
    p.add_argument("--broker", action="append", choices=registry.kinds(), help="harness parts: brokers compared")
    p.add_argument("--no-pin", action="store_true",
                   help="harness parts: leave broker and clients on the same CPUs (default: the broker, always a "
                        "private one then, on CPUs of its own and the clients on the rest, where there are 2 or more)")
    p.add_argument("--no-awake", action="store_true",
                   help="harness parts: let idle CPUs sleep (default: every CPU held out of idle states while a run "
                        "measures, where this user may ask it: see benchmarks/harness/cpu_idle.py)")
    p.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)     # tests: shorter windows
    p.add_argument("--repeat", type=int, default=REFERENCE_REPEAT, help=argparse.SUPPRESS)
    p.add_argument("--small", action="store_true", help=argparse.SUPPRESS)        # tests: CI-size scenarios
    return p


def chosen_parts(only: list[str] | None, skip: list[str]) -> list[Part]:
    for name in (only or []) + skip:
        part(name)  # an unknown name is an error, not silently nothing
    return [p for p in PARTS if (not only or p.name in only) and p.name not in skip]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    options = Options(scale=args.scale, repeat=args.repeat, kinds=tuple(args.broker or ()), small=args.small,
                      pin_cpus=not args.no_pin, awake_cpus=not args.no_awake)
    parts = chosen_parts(args.only, args.skip)
    here = where_we_are()
    manifest = read_manifest(args.out)
    commit = here["git_commit"] or "unknown"
    if commit.endswith("-dirty") and not args.allow_dirty and not args.list:
        raise SystemExit("brokerbench reference: the tree has uncommitted changes (git status); the reference must "
                         "name the commit that made it. Commit first, or pass --allow-dirty to try the command out.")
    todo, total = [], 0.0
    console.print(f"[bold]brokerbench reference[/bold] into {args.out}: {len(parts)} parts on {here['cpu']}, "
                  f"{here['cores']} cores, {here['os']}, commit {commit}")
    for p in parts:
        done = manifest.get("parts", {}).get(p.name)
        same = bool(done) and done.get("where") == here and done.get("status") == "done" \
            and done.get("scale") == options.scale
        seconds, how = estimate(p, options, manifest)
        if args.resume and same:
            console.print(f"  {p.name:12s} done at this commit on this machine: kept")
            continue
        todo.append(p)
        total += seconds
        console.print(f"  {p.name:12s} {_hm(seconds):>12s} ({how})  {p.what}")
    console.print(f"  {'in all':12s} {_hm(total):>12s}; ends about "
                  f"{(datetime.now() + timedelta(seconds=total)):%H:%M} if the estimates hold")
    if args.list:
        return manifest
    manifest.setdefault("parts", {})
    for name, successor in RETIRED_PARTS.items():  # an older reference's files of a retired part would mix commits
        retired = args.out / "results" / name
        if retired.exists():
            shutil.rmtree(retired)
            console.print(f"  {name}: a retired part ({successor} measures it now): its folder removed")
        manifest["parts"].pop(name, None)
    started_all = time.monotonic()
    left = total
    for index, p in enumerate(todo, 1):
        folder = args.out / "results" / p.name
        if folder.exists():
            shutil.rmtree(folder)   # this part's own folder only: never mix commits in one folder
        folder.mkdir(parents=True)
        seconds, _ = estimate(p, options, manifest)
        console.print(f"[bold]{index}/{len(todo)} {p.name}[/bold] ({p.what}): about {_hm(seconds)}, "
                      f"all parts about {_hm(left)} from now")
        manifest["parts"][p.name] = {"status": "running", "where": here, "scale": options.scale,
                                     "started": datetime.now().isoformat(timespec="seconds")}
        write_manifest(args.out, manifest)
        t0 = time.monotonic()
        try:
            p.run(folder, options, console)
        except BaseException:
            manifest["parts"][p.name]["status"] = "failed or interrupted"
            write_manifest(args.out, manifest)
            raise
        took = time.monotonic() - t0
        manifest["parts"][p.name].update(status="done", seconds=round(took, 1),
                                         finished=datetime.now().isoformat(timespec="seconds"))
        write_manifest(args.out, manifest)
        left = max(0.0, left - seconds)
        console.print(f"  {p.name} took {_hm(took)} (estimated {_hm(seconds)})")
    manifest["seconds_this_call"] = round(time.monotonic() - started_all, 1)
    write_manifest(args.out, manifest)
    console.print(f"reference: {len(todo)} parts in {_hm(manifest['seconds_this_call'])}")
    if not args.no_report and (args.out / "results").exists():
        from ..results import report

        path = report.build([args.out / "results"], args.out)
        console.print(f"report: {path} and {path.with_suffix('.html')}")
    return manifest
