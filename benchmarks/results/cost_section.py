"""The report's section "What each job costs: broker vs client CPU": per cell (job type x
broker x durability x loop), CPU seconds per 1,000 jobs of the broker and of the clients, jobs
per broker CPU-second, each side's utilisation, where they ran and what bound the runs, with
the results files; a stacked bar of the same; one sentence on the mix.

Every number is read from the results files through :mod:`.cpu_cost` (recorded, or derived the
same way for files written before it existed): medians over a cell's repetitions, with their
min-max when there are several.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from . import cpu_cost, plots, sources
from .blocks import Block, Section
from .summary import Spread, _order, durability_words, fmt_spread

HEADER = ["job type", "broker", "durability", "loop", "broker CPU-s / 1k jobs", "client CPU-s / 1k jobs",
          "jobs/broker CPU-s", "utilisation broker / clients", "CPUs", "bound by", "results files"]
EXPLAIN = ("CPU seconds each side used in the measured window, per 1,000 jobs finished in it. Clients are the "
           "producer and consumer processes (Python); the harness's own process is counted apart. Utilisation: a "
           "side's CPU seconds over the window times the CPUs it could use (its pinned set, else every CPU). "
           f"Bound by: a side whose CPUs were at least {cpu_cost.BOUND_AT:.0%} busy with its own work (pinned apart: "
           "or that busy, half of it or more its own); 'shared CPUs' when broker and clients were not pinned apart "
           "and together filled the CPUs, so which one a faster CPU would help cannot be told; 'other work' when "
           "other processes on the machine did most of what filled them; 'neither' says "
           "only that no CPUs were full (one thread, one Python process, the disk or the backlog bound may still "
           "set the pace). CPU time is counted in ticks of 10 ms: a side that used a fraction of a second in the "
           "window (the open loop's broker) is known to a few per cent at best.").replace("%", " %")


def _cells(results: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        sc = r["scenario"]
        if r.get("figures") and sc["mode"] in ("closed", "open"):
            cells.setdefault((sc["profile"], sc["broker"], durability_words(r), sc["mode"]), []).append(r)
    return dict(sorted(cells.items(), key=lambda kv: (*_order({"profile": kv[0][0], "broker": kv[0][1],
                                                                "durability": kv[0][2]}), kv[0][3])))


def _spread(costs: list[cpu_cost.Cost], get: Any, pattern: str) -> str:
    return fmt_spread(Spread.of([get(c) for c in costs]), pattern)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}".replace("%", " %")


def where_they_ran(results: list[dict[str, Any]]) -> str:
    """Where a cell's broker and clients ran, from its files' ``environment.cpu_pinning``."""
    said = set()
    for r in results:
        pinning = (r.get("environment") or {}).get("cpu_pinning") or {}
        broker, clients = pinning.get("broker"), pinning.get("clients")
        cores = pinning.get("cores") or ((r.get("environment") or {}).get("machine") or {}).get("cores")
        if broker and clients:
            said.add(f"broker {','.join(map(str, broker))}, clients {','.join(map(str, clients))}")
        elif clients:
            said.add(f"clients {','.join(map(str, clients))}, broker unpinned")
        else:
            said.add(f"unpinned, {cores} shared")
    awake = idle_words(results)
    return "; ".join(sorted(said)) + (f" ({awake})" if awake else "")


def idle_words(results: list[dict[str, Any]]) -> str:
    """Whether the CPUs were held out of idle states (``environment.cpu_pinning.idle``, written
    since that setting exists): "CPUs awake", "CPUs left to idle", "CPUs awake in k of n runs";
    "" when no file says."""
    said = [((r.get("environment") or {}).get("cpu_pinning") or {}).get("idle") for r in results]
    known = [bool(s.get("awake")) for s in said if isinstance(s, dict)]
    if not known:
        return ""
    if all(known) and len(known) == len(results):
        return "CPUs awake"
    if not any(known):
        return "CPUs left to idle"
    return f"CPUs awake in {sum(known)} of {len(results)} runs"


def cost_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per cell, in HEADER's order."""
    rows = []
    for (profile, broker, durability, mode), runs in _cells(results).items():
        costs = [c for r in runs if (c := cpu_cost.of(r)) is not None]
        utilisation = (f"{_pct(_median([c.utilisation.get('broker') for c in costs]))} / "
                       f"{_pct(_median([c.utilisation.get('clients') for c in costs]))}")
        rows.append([profile, plots.label(broker), durability, mode,
                     _spread(costs, lambda c: c.per_1000.get("broker"), "{:.3f}"),
                     _spread(costs, lambda c: c.per_1000.get("clients"), "{:.3f}"),
                     _spread(costs, lambda c: c.jobs_per_broker_cpu_s, "{:,.0f}"),
                     utilisation, where_they_ran(runs), cpu_cost.bound_summary(costs),
                     sources.cite(sources.of(r) for r in runs)])
    return rows


def _median(values: list[float | None]) -> float | None:
    spread = Spread.of(values)  # type: ignore[arg-type]
    return spread.median if spread else None


def cpu_per_job(results: list[dict[str, Any]]) -> Figure | None:
    """Closed loop: CPU seconds per 1,000 jobs, the broker's (solid) under the clients' (light,
    hatched), one stacked bar per job type and broker (medians of the repetitions), in the broker's
    colour; the legend keys the brokers by colour and the two parts in grey. Where a broker ran
    more than one durability setting, each bar names its own (else the line under the title does)."""
    from matplotlib.patches import Patch

    cells = [(key, runs) for key, runs in _cells(results).items() if key[3] == "closed"]
    if not cells:
        return None
    settings: dict[str, set[str]] = {}
    for (_, broker, durability, _), _runs in cells:
        settings.setdefault(broker, set()).add(durability)
    per_bar = any(len(s) > 1 for s in settings.values())
    fig, ax = plots._subplots(figsize=(max(6.0, (1.45 if per_bar else 1.1) * len(cells) + 2), 4.2))
    labels = []
    for x, ((profile, broker, durability, _), runs) in enumerate(cells):
        costs = [c for r in runs if (c := cpu_cost.of(r)) is not None]
        own = _median([c.per_1000.get("broker") for c in costs]) or 0.0
        theirs = _median([c.per_1000.get("clients") for c in costs]) or 0.0
        ax.bar(x, own, 0.6, color=plots.colour(broker))
        ax.bar(x, theirs, 0.6, bottom=own, color=plots.colour(broker), alpha=0.35, hatch="//")
        ax.text(x, own + theirs, f"{own:.2f} + {theirs:.2f}", ha="center", va="bottom", fontsize=7)
        labels.append(f"{plots._short(profile)}\n{plots.label(broker)}"
                      + ("\n" + durability.replace(": ", ":\n", 1) if per_bar else ""))
    ax.set_xticks(range(len(cells)), labels, fontsize=7)
    ax.set_ylabel("CPU seconds per 1,000 jobs")
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.05)
    keys = [Patch(color=plots.colour(kind), label=plots.label(kind)) for kind in sorted(settings)]
    keys += [Patch(color=plots.NEUTRAL, label="broker"),
             Patch(facecolor=plots.NEUTRAL, alpha=0.35, hatch="//", label="clients (Python producers + consumers)")]
    ax.legend(handles=keys, frameon=False, fontsize=8, ncol=len(keys), loc="lower left", bbox_to_anchor=(0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    used = [r for _, runs in cells for r in runs]
    return plots._finish(fig, "What each job costs, closed loop: broker CPU (solid) and client CPU (hatched)", used,
                         durability="Durability: per bar, under its name" if per_bar else None)


def takeaway(results: list[dict[str, Any]], profile: str = "mix") -> str:
    """One sentence per broker on the mix in closed loop: CPU per 1,000 jobs on each side, jobs
    per broker CPU-second, what bound it."""
    parts = []
    for (p, broker, durability, mode), runs in _cells(results).items():
        if p != profile or mode != "closed":
            continue
        costs = [c for r in runs if (c := cpu_cost.of(r)) is not None]
        own, theirs = (_median([c.per_1000.get(side) for c in costs]) for side in ("broker", "clients"))
        rate = _median([c.jobs_per_broker_cpu_s for c in costs])
        if own is None or theirs is None:
            continue
        parts.append(f"{plots.label(broker)} ({durability}): the broker {own:.3f} CPU-s and the clients "
                     f"{theirs:.3f} CPU-s per 1,000 jobs ({theirs / own:.1f}x the broker's), "
                     f"{rate:,.0f} jobs per broker CPU-second, bound by {cpu_cost.bound_summary(costs)}"
                     if own else f"{plots.label(broker)}: the broker's CPU is not known apart")
    if not parts:
        return ""
    return f"Closed loop, {profile}: " + "; ".join(parts) + "."


def blocks(results: list[dict[str, Any]], plot_dir: Any, name: str = "cpu-per-job",
           heading: str = "What each job costs: broker vs client CPU") -> list[Block]:
    """The section: heading, what the columns mean, the table, the plot, the takeaway."""
    rows = cost_rows(results)
    if not rows:
        return []
    out = Section(plot_dir, [Block("heading", heading, level=3), Block("text", EXPLAIN),
                             Block("table", header=list(HEADER), rows=rows)])
    out.figure(name, cpu_per_job(results), "Broker and client CPU seconds per 1,000 jobs")
    out.say(takeaway(results))
    return list(out)
