"""The report's "clients side by side" section: on each server and promise, our adapter's runs
beside the real clients' (the official BullMQ on Node, amqplib), measured in the same run.

A contender's runs never enter the sections about the brokers (the headline, the plots): those
measure our adapters, and say so. Here each row is one (job type, server, promise, client)
cell with the medians of its repetitions, the samples behind each percentile, the counts of
lost, duplicated and in-doubt jobs, and the client's CPU per 1,000 jobs (a contender's program
with the harness's bridge to it: see :mod:`benchmarks.contenders.bridge`).
"""

from __future__ import annotations

import statistics
from typing import Any

from ..harness.metrics import count_of
from ..harness.suite import NOOP_LABELS
from . import plots
from .blocks import Block
from .cost_section import idle_words
from .cpu_cost import of as cost_of
from .percentiles import allowed, sig
from .summary import SUMMARY_HEADER, Spread, contender, fmt_spread, summary_cells, summary_rows

CPU_NOTE = ("Client CPU is per role, CPU seconds per 1,000 jobs finished in the window (equally, CPU ms per "
            "job): the producer's and the worker's processes; for a contender, its own program alone (the "
            "harness's bridge to it is counted apart, as the harness's own process is). Our producer's process "
            "also makes the workload (payloads, traces, counting) that the bridge makes for a contender: its "
            "figure is an upper bound of our client's own cost.")
IDLE_NOTE = {
    "CPUs awake": "Every run held the CPUs out of idle states (benchmarks/harness/cpu_idle.py): a round trip "
                  "pays no CPU wake-up.",
    "CPUs left to idle": "The CPUs were left to idle: on a virtual machine each round trip with one job in flight "
                         "pays CPU wake-ups, which favour a client that keeps a second process busy (see "
                         "benchmarks/harness/cpu_idle.py).",
}
INTRO = ("Our clients and the real ones on the same server and promise, measured in one run (cells "
         "interleaved). \"ours\" is brokerbench's own adapter (Python); a named client is the library the "
         "seed's service would use, run through the role protocol (benchmarks/contenders/protocol.py), with the "
         "same workload, pacing and counting. " + CPU_NOTE)


def _role_cpu(runs: list[dict[str, Any]], role: str) -> float | None:
    """The median CPU seconds per 1,000 jobs of ``role`` (producers, consumers) over ``runs``."""
    costs = [c.per_1000.get(role) for r in runs if (c := cost_of(r))]
    costs = [v for v in costs if v is not None]
    return statistics.median(costs) if costs else None


def _bridged(runs: list[dict[str, Any]]) -> bool:
    """A contender's runs recorded before the bridge was counted apart: their role CPU
    includes the harness's bridge process."""
    return any(contender(r["scenario"]) and "bridge" not in (r["figures"].get("cpu_s") or {}) for r in runs)


def _roles_cpu(runs: list[dict[str, Any]]) -> str:
    """"producer / worker" CPU seconds per 1,000 jobs, medians over the runs, with their count."""
    if not runs:
        return "-"
    cells = ["-" if (v := _role_cpu(runs, role)) is None else f"{v:.3f}" for role in ("producers", "consumers")]
    return " / ".join(cells) + f" (n {len(runs)})" + (" †" if _bridged(runs) else "")


BRIDGED = ("† recorded before the harness's bridge to a contender's program was counted apart: the role's "
           "CPU includes that bridge.")

NOOP_INTRO = ("No-op jobs, every client on the same server and promise (the former drain, enqueue and latency "
              "benchmarks as ordinary runs): one worker process (concurrency or prefetch 50) draining {jobs} jobs "
              "that one producer added one per call, each call awaited (the seed's bot path: one add per incoming "
              "message), and adds and end to end at {rate:,.0f} jobs/s. Figures are medians over the runs (min-max); a "
              "percentile is the median of the runs' own, with the samples behind each run.")
NOOP_HEADER = ["server", "durability", "client", "drain jobs/s", "add one per call, jobs/s",
               "add p50 / p99 ms at the rate", "end to end p50 / p99 ms", "samples per run", "lost", "dup", "in doubt",
               "runs", "worker CPU-s / 1k jobs (drain)", "producer CPU-s / 1k jobs (at the rate)"]


def _noop(run: dict[str, Any]) -> str:
    """"drain" or "latency" for a run of no-op jobs of the contender workloads (labelled so, or
    with the server's name after it: "drain-redis"), else ""."""
    label = run["scenario"].get("label") or ""
    if run["scenario"].get("service_factor"):
        return ""
    return next((name for name in NOOP_LABELS if label == name or label.startswith(name + "-")), "")


SENT_AHEAD = ("‡ our AMQP producer with windowed confirms: a call returns once its message is sent, with its "
              "confirm still to come (a window of unconfirmed messages); every contender's call awaits its "
              "confirm. A row marked \"(each)\" is ours with each confirm awaited: that one compares like with like.")


def _sent_ahead(run: dict[str, Any]) -> bool:
    """Our producer's calls returned before the broker's confirm (AMQP, windowed confirms)."""
    sc = run["scenario"]
    return not contender(sc) and (sc.get("broker_options") or {}).get("confirms") == "windowed"


def _variant(run: dict[str, Any], which: str) -> str:
    """What a workload's label adds to its no-op name ("drain-each-rabbitmq": " (each)"), so runs
    of other settings (each confirm awaited, adds in batches) never share a row with the plain ones."""
    label = run["scenario"].get("label") or ""
    middle = label[len(which):].strip("-")
    broker = run["scenario"].get("broker") or ""
    if middle == broker or middle.endswith("-" + broker):
        middle = middle[: -len(broker)].strip("-")
    return f" ({middle})" if middle else ""


def _pair(figures: list[dict[str, Any]]) -> str:
    """p50 / p99 of latency summaries: each the median of the runs' own (a percentile only where
    a run has the samples it needs)."""
    out = []
    for name in ("p50", "p99"):
        values = [allowed(f, name) for f in figures]
        out.append("-" if not values or None in values else sig(sorted(values)[len(values) // 2]))  # type: ignore
    return " / ".join(out)


def _samples(figures: list[dict[str, Any]]) -> str:
    counts = [c for f in figures if (c := count_of(f)) is not None]
    if not counts:
        return "-"
    return f"{min(counts):,}" + (f"-{max(counts):,}" if max(counts) != min(counts) else "")


def _one_role(runs: list[dict[str, Any]], role: str) -> str:
    value = _role_cpu(runs, role)
    return "-" if value is None else f"{value:.3f}" + (" †" if _bridged(runs) else "")


def noop_blocks(runs: list[dict[str, Any]]) -> list[Block]:
    """The no-op table: per server, promise and client, the drain runs' drain and fill rates,
    and the latency runs' add and end-to-end percentiles (an add's time in a fill includes its
    wait behind the jobs sent ahead of it, so it is not quoted)."""
    cells: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in runs:
        if which := _noop(r):
            sc = r["scenario"]
            key = (sc["broker"], sc.get("durability", ""), (contender(sc) or "ours") + _variant(r, which))
            cells.setdefault(key, {"drain": [], "latency": []})[which].append(r)
    if not cells:
        return []
    rows = []
    for (broker, durability, client), found in sorted(cells.items()):
        drains, latencies = found["drain"], found["latency"]
        both = drains + latencies
        rows.append([plots.label(broker), durability or "-", client,
                     fmt_spread(Spread.of([(d.get("drain") or {}).get("jobs_per_s") for d in drains])),
                     fmt_spread(Spread.of([(d.get("drain") or {}).get("fill_jobs_per_s") for d in drains]))
                     + (" ‡" if any(_sent_ahead(d) for d in drains) else ""),
                     _pair([r["figures"]["latency_ms"].get("publish") or {} for r in latencies]),
                     _pair([r["figures"]["latency_ms"].get("end_to_end") or {} for r in latencies]),
                     _samples([r["figures"]["latency_ms"].get("end_to_end") or {} for r in latencies]),
                     str(sum(r["figures"].get("lost") or 0 for r in both)),
                     str(sum(r["figures"].get("duplicated") or 0 for r in both)),
                     str(sum(r["figures"].get("in_doubt") or 0 for r in both)),
                     f"{len(drains)} + {len(latencies)}",
                     _one_role(drains, "consumers"), _one_role(latencies, "producers")])
    any_drain = next((r for f in cells.values() for r in f["drain"]), None)
    any_latency = next((r for f in cells.values() for r in f["latency"]), None)
    jobs = f"{any_drain['scenario']['drain_jobs']:,}" if any_drain else "no"
    rate = any_latency["scenario"]["rate"] if any_latency else 0.0
    notes = [Block("text", BRIDGED)] if any("†" in cell for row in rows for cell in row) else []
    if any("‡" in row[4] for row in rows):
        notes.append(Block("text", SENT_AHEAD))
    return [Block("text", NOOP_INTRO.format(jobs=jobs, rate=rate) + " " + CPU_NOTE),
            Block("table", header=NOOP_HEADER, rows=rows), *notes]


def blocks(ours: list[dict[str, Any]], contenders: list[dict[str, Any]]) -> list[Block]:
    """The section, or nothing when no contender ran. ``ours`` rows are kept only where a
    contender ran the same job type, loop, server, promise and label (the reference's contender
    part labels its runs: its rows of ours are its own, not the headline's). Runs of no-op jobs (drain,
    latency) get a table of their own (:func:`noop_blocks`)."""
    if not contenders:
        return []
    noop = noop_blocks([*ours, *contenders])
    idle = idle_words([*ours, *contenders])
    ours = [r for r in ours if not _noop(r)]
    contenders = [r for r in contenders if not _noop(r)]

    def cell(r: dict[str, Any]) -> tuple[str, ...]:
        sc = r["scenario"]
        return sc["profile"], sc["broker"], sc["mode"], sc.get("durability", ""), sc.get("label", "")

    cells = {cell(r) for r in contenders}
    matched = [r for r in ours if cell(r) in cells and not contender(r["scenario"])]
    runs = matched + contenders
    rows = []
    for row in summary_rows(runs):
        mine = [r for r in runs if r["scenario"]["profile"] == row["profile"]
                and r["scenario"]["broker"] == row["broker"] and contender(r["scenario"]) == row.get("client", "")]
        name = row.get("client") or "ours"
        cells_ = summary_cells(row, f"{plots.label(row['broker'])}: {name}")
        rows.append([*cells_, _roles_cpu([r for r in mine if r["scenario"]["mode"] == "closed"])])
    table = [Block("table", header=[*SUMMARY_HEADER, "producer / worker CPU-s per 1k jobs"], rows=rows)] if rows else []
    if any("†" in row[-1] for row in rows):
        table.append(Block("text", BRIDGED))
    intro = INTRO + (f" {IDLE_NOTE[idle]}" if idle in IDLE_NOTE else f" {idle}: runs of two settings, not comparable."
                     if idle else "")
    return [Block("heading", "Our clients and the real ones, side by side"), Block("text", intro), *table, *noop]
