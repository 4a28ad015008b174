"""Plots of results files (matplotlib). Notebooks and ``brokerbench report`` call these.

One colour per broker everywhere (each driver's; Okabe-Ito, safe for colour-blind readers), and no broker's
colour for anything else (events, redeliveries, a new leader); every figure has a title, a line under it
naming the durability each side ran (what "accepted" promised: :mod:`.promises`, read from the results files
drawn), axis units and a caption with the environment it was measured in.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from typing import Any, Iterable

from matplotlib.figure import Figure

from brokers import registry

from ..harness.metrics import SAMPLES_BEYOND, count_of, decode, recorded
from . import environments, promises
from .percentiles import allowed

EVENT_COLOUR = "#CC79A7"    # a fault injected (Okabe-Ito reddish purple: no broker's colour)
MARK_COLOUR = "#000000"     # redeliveries, a new leader: marks that belong to neither broker
NEUTRAL = "#777777"         # legend keys for a style (solid, hatched, light) shared by every broker


def _driver(kind: str) -> registry.Driver | None:
    try:
        return registry.get(kind)
    except ValueError:  # a results file may name a kind this installation does not have
        return None


def label(kind: str) -> str:
    """How tables and plots name a broker kind (its driver's label)."""
    driver = _driver(kind)
    return driver.label if driver else kind


def colour(kind: str) -> str:
    driver = _driver(kind)
    return driver.colour if driver else "#999999"


def marker(kind: str) -> str:
    driver = _driver(kind)
    return driver.marker if driver else "o"


PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))
PROFILE_ORDER = ("mix", "heavy_workflow_execution", "user_variables_update", "statistics_aggregation")


def _subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """Like pyplot.subplots, without pyplot: the figure is the caller's to show or save (a
    notebook shows the returned figure once; no GUI backend is ever needed)."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def caption(results: Iterable[dict[str, Any]]) -> str:
    """One line: machine, versions of every broker involved, commit (each run names the broker it
    ran on); when the plotted results span more than one machine, kernel or commit, it says how
    many settings, after the first file's."""
    results = list(results)
    if not results:
        return ""
    env = results[0].get("environment", {})
    m = env.get("machine", {})
    versions: dict[str, str] = {}
    for r in results:
        for kind, d in r.get("environment", {}).get("brokers", {}).items():
            versions.setdefault(kind, str(d.get("version", "?")))
    brokers = ", ".join(f"{label(k)} {v}" for k, v in sorted(versions.items()))
    found = environments.groups(results)
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores; Python {env.get('python', '?')}; {brokers}; "
            f"commit {env.get('git_commit') or '?'}"
            + (f"; MIXED: {len(found)} settings ({', '.join(environments.differences(found))})" if len(found) > 1
               else ""))


def _finish(fig: Figure, title: str, results: list[dict[str, Any]], durability: str | None = None) -> Figure:
    """Title; under it the durability line (``durability``, else :func:`.promises.line` of
    ``results``); the caption at the foot. The figure grows by the line's height, so its axes keep
    their room."""
    said = promises.line(results) if durability is None else durability
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(said, width=max(50, int(width * 15))) if said else []
    title = "\n".join(part for line in title.split("\n") for part in textwrap.wrap(line, width=int(width * 10)))
    title_in = 0.14 + 0.24 * (title.count("\n") + 1)
    line_in = 0.06 + 0.16 * len(lines) if lines else 0.0
    height += line_in
    fig.set_size_inches(width, height)
    fig.suptitle(title, fontsize=12, y=1 - 0.08 / height, va="top").set_in_layout(False)  # placed here, not by
    if lines:                                                                              # tight_layout
        fig.text(0.5, 1 - title_in / height, "\n".join(lines), fontsize=8.5, color="#222222", ha="center", va="top")
    fig.text(0.01, 0.005, caption(results), fontsize=7, color="#555555", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.2 / height, 1, 1 - (title_in + line_in + 0.02) / height))
    return fig


def _short(profile: str) -> str:
    return {"heavy_workflow_execution": "heavy workflow", "user_variables_update": "user variables",
            "statistics_aggregation": "statistics"}.get(profile, profile)


def _groups(results: list[dict[str, Any]], mode: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs of ``mode`` by (job type, broker): a cell's repetitions together."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        if r["scenario"]["mode"] == mode and r.get("figures"):
            out.setdefault((r["scenario"]["profile"], r["scenario"]["broker"]), []).append(r)
    return out


def side_label(runs: list[dict[str, Any]]) -> str:
    """The broker, with the durability its runs used: level and profile (every plot names it)."""
    from .summary import durability_words

    if not runs:
        return label("?")
    words = durability_words(runs[0])
    return label(runs[0]["scenario"]["broker"]) + (f" ({words})" if words != "-" else "")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def throughput_by_type(results: list[dict[str, Any]]) -> Figure:
    """Closed-loop throughput (jobs finished per second) per job type and broker: the median of
    the repetitions, the bar's whisker their min-max."""
    runs = _groups(results, "closed")
    profiles = [p for p in PROFILE_ORDER if any(k[0] == p for k in runs)]
    brokers = sorted({b for _, b in runs})
    fig, ax = _subplots(figsize=(8, 4.2))
    width = 0.8 / max(len(brokers), 1)
    for i, broker in enumerate(brokers):
        xs = [j + (i - (len(brokers) - 1) / 2) * width for j in range(len(profiles))]
        values = [[r["figures"]["throughput"]["out_per_s"] for r in runs.get((p, broker), [])] for p in profiles]
        ys = [_median(v) for v in values]
        err = [[y - min(v, default=y) for y, v in zip(ys, values)], [max(v, default=y) - y for y, v in zip(ys, values)]]
        some = next((runs[(p, broker)] for p in profiles if (p, broker) in runs), [])
        bars = ax.bar(xs, ys, width, color=colour(broker), label=side_label(some),
                      yerr=err if any(len(v) > 1 for v in values) else None, capsize=3, ecolor="#333333")
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(profiles)), [_short(p) for p in profiles])
    ax.set_ylabel("jobs finished per second")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    every = [r for group in runs.values() for r in group]
    reps = max((len(g) for g in runs.values()), default=1)
    return _finish(fig, "Maximum throughput (closed loop, backlog bounded)"
                   + (f": median of {reps} runs, whiskers min-max" if reps > 1 else ""), every)


def latency_percentiles(results: list[dict[str, Any]], metric: str = "end_to_end_intended") -> Figure:
    """Open-loop latency percentiles (log scale) per job type, one line per broker (the median of
    the repetitions; the band their min-max). A percentile is drawn only where every run of the
    cell has the samples it needs (:func:`~benchmarks.harness.metrics.printable`); each panel's
    title gives the samples per run and names the percentiles left out."""
    runs = _groups(results, "open")
    profiles = [p for p in PROFILE_ORDER if any(k[0] == p for k in runs)]
    fig, axes = _subplots(1, max(len(profiles), 1), figsize=(3.2 * max(len(profiles), 1), 3.8), sharey=True,
                             squeeze=False)
    for ax, profile in zip(axes[0], profiles, strict=False):
        counts: list[int | None] = []
        left_out: set[str] = set()
        for broker in sorted({b for p, b in runs if p == profile}):
            group = runs[(profile, broker)]
            figures = [r["figures"]["latency_ms"][metric] for r in group]
            counts += [count_of(f) for f in figures]
            names = [n for n, _ in PERCENTILES if n in figures[0]]
            left_out |= {n.replace("_", ".") for n in names if any(allowed(f, n) is None for f in figures)}
            names = [n for n in names if all(allowed(f, n) is not None for f in figures)]
            per = [[f[n] for f in figures] for n in names]
            xs = [n.replace("p99_9", "p99.9") for n in names]
            ax.plot(xs, [_median(v) for v in per], marker=marker(broker), color=colour(broker),
                    label=side_label(group))
            if len(group) > 1:
                ax.fill_between(xs, [min(v) for v in per], [max(v) for v in per], color=colour(broker), alpha=0.15)
        rate = next(g[0]["scenario"]["rate"] for (p, _), g in runs.items() if p == profile)
        known = [c for c in counts if c is not None]
        n = ("n unknown" if not known else f"n={min(known):,}" if min(known) == max(known)
             else f"n={min(known):,}-{max(known):,}")
        ax.set_title(f"{_short(profile)} at {rate:,.0f}/s, {n} per run"
                     + (f"\n{', '.join(sorted(left_out))}: too few samples, not drawn" if left_out else ""),
                     fontsize=9)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("end-to-end latency, ms (log)")
    axes[0][0].legend(frameon=False, fontsize=8)
    every = [r for group in runs.values() for r in group]
    return _finish(fig, "Latency percentiles, open loop (from each job's intended send time); a percentile q is "
                        f"drawn only with {SAMPLES_BEYOND}/(1-q) samples per run", every)


def latency_cdf(results: list[dict[str, Any]], profile: str = "mix",
                metric: str = "end_to_end_intended") -> Figure:
    """Distribution of end-to-end latency from the encoded HDR histograms (the repetitions of a
    cell merged into one histogram): the CDF, and beside it the tail on a log y axis."""
    curves, used = [], []
    for (p, broker), group in sorted(_groups(results, "open").items()):
        found = [r for r in group if r.get("histograms")]
        if p != profile or not found:
            continue
        hist = merged(found, metric)
        if hist.get_total_count():
            curves.append((broker, hist, side_label(found)))
            used += found
    return cdf_and_tail(curves, "end-to-end latency, ms (log)",
                        f"Latency distribution, {_short(profile)}, open loop: CDF, and its tail (log y)", used)


def merged(results: list[dict[str, Any]], metric: str) -> Any:
    """One HDR histogram of ``metric`` (``histograms.overall``) over ``results``: the repetitions
    of a cell as if they were one run."""
    hist = decode(results[0]["histograms"]["overall"][metric])
    for r in results[1:]:
        hist.add(decode(r["histograms"]["overall"][metric]))
    return hist


def cdf_and_tail(curves: list[tuple[str, Any, str]], xlabel: str, title: str, used: list[dict[str, Any]]) -> Figure:
    """A CDF (left) and its tail on a log y axis (right), one curve per (broker kind, HDR
    histogram in microseconds, legend label)."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 4))
    for kind, hist, name in curves:
        xs, ys = cdf_points(hist)
        left.plot(xs, ys, color=colour(kind), label=f"{name} (n={hist.get_total_count():,})")
        tail_panel(right, xs, ys, hist.get_total_count(), color=colour(kind))
    right.set_title(f"dotted: fewer than {SAMPLES_BEYOND} jobs slower (too few to read)", fontsize=8)
    left.set_xscale("log")
    left.set_ylabel("share of jobs at or below")
    left.grid(True, which="both", alpha=0.3)
    left.legend(frameon=False, fontsize=8)
    for ax in (left, right):
        ax.set_xlabel(xlabel)
    return _finish(fig, title, used)


def cdf_points(hist: Any) -> tuple[list[float], list[float]]:
    """(ms, share at or below) for every recorded value of an HDR histogram in microseconds."""
    total = hist.get_total_count()
    xs: list[float] = []
    ys: list[float] = []
    seen = 0
    for value, count in recorded(hist):
        seen += count
        xs.append(value / 1000)
        ys.append(seen / total)
    return xs, ys


def tail_panel(ax: Any, xs: list[float], ys: list[float], total: int, **style: Any) -> None:
    """The share of jobs slower than x, on a log y axis: the tail a linear CDF squeezes into its
    top pixel. Drawn down to one job in ``total``: solid while at least ``SAMPLES_BEYOND`` jobs
    are slower (the rule of every percentile), dotted beyond, where a few jobs make the curve."""
    floor = 1 / max(total, 1)
    shares = [max(1 - y, floor) for y in ys]
    readable = SAMPLES_BEYOND / max(total, 1)
    cut = next((i for i, share in enumerate(shares) if share < readable), len(shares))
    ax.plot(xs[:cut + 1], shares[:cut + 1], **style)
    if cut < len(shares):
        ax.plot(xs[cut:], shares[cut:], linestyle=":", **style)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.1)
    ax.set_xscale("log")
    ax.set_ylabel("share of jobs slower (log)")
    ax.grid(True, which="both", alpha=0.3)



def latency_vs_load(sweeps: list[dict[str, Any]]) -> Figure:
    """p50 and p99 against offered rate, one line per sweep (its repetitions drawn apart, one
    legend entry per broker and percentile), each broker's max sustainable rates marked with how
    many of its sweeps reached each; a step with too few samples for a percentile has no point (a
    gap in its line)."""
    fig, ax = _subplots(figsize=(7.5, 4.2))
    kinds = sorted({r["scenario"]["broker"] for r in sweeps})
    for k, broker in enumerate(kinds):
        mine = [r for r in sweeps if r["scenario"]["broker"] == broker]
        for i, r in enumerate(mine):
            steps = r.get("steps") or []
            rates = [s["offered_rate"] for s in steps]
            for name, style in (("p50", "--"), ("p99", "-")):
                ys = [math.nan if (v := allowed(s["figures"]["latency_ms"]["end_to_end_intended"], name)) is None
                      else v for s in steps]
                ax.plot(rates, ys, style, marker=marker(broker), color=colour(broker), alpha=0.85,
                        label=f"{label(broker)} {name}" if i == 0 else None)
        best = [r["max_sustainable_rate"] for r in mine if r.get("max_sustainable_rate")]
        for j, rate in enumerate(sorted(set(best))):
            ax.axvline(rate, color=colour(broker), alpha=0.6, linestyle=":")
            runs = f" ({best.count(rate)} of {len(mine)} sweeps)" if len(mine) > 1 else ""
            ax.text(rate, 0.02 + 0.08 * (k + j), f" {label(broker)}: max sustainable {rate:,.0f}/s{runs}",
                    color=colour(broker), fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_yscale("log")
    ax.set_xlabel("offered load, jobs per second")
    ax.set_ylabel("end-to-end latency, ms (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    profile = sweeps[0]["scenario"]["profile"] if sweeps else ""
    per = max((sum(1 for r in sweeps if r["scenario"]["broker"] == b) for b in kinds), default=1)
    return _finish(fig, f"Latency against load ({_short(profile)}), saturation marked"
                   + (f": {per} sweeps per broker, each drawn" if per > 1 else ""), sweeps)


def scaling_with_consumers(results: list[dict[str, Any]]) -> Figure:
    """Closed-loop throughput against the number of consumer processes."""
    fig, ax = _subplots(figsize=(7.5, 4))
    used = []
    for broker in sorted({r["scenario"]["broker"] for r in results}):
        points = sorted((r["scenario"]["consumers"], r["figures"]["throughput"]["out_per_s"]) for r in results
                        if r["scenario"]["broker"] == broker and r["scenario"]["mode"] == "closed" and r.get("figures"))
        used += [r for r in results if r["scenario"]["broker"] == broker]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker(broker), color=colour(broker),
                label=label(broker))
    ax.set_xlabel("consumer processes")
    ax.set_ylabel("jobs finished per second")
    ax.set_xticks(sorted({r["scenario"]["consumers"] for r in results}))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    return _finish(fig, "Scaling with consumers (closed loop, mix)", used)


def timeline(result: dict[str, Any]) -> Figure:
    """Jobs sent and finished per second, and the backlog, with fault events marked."""
    f = result["figures"]
    broker = result["scenario"]["broker"]
    fig, (top, bottom) = _subplots(2, 1, figsize=(8, 4.6), sharex=True)
    t = f["timeline"]
    top.plot(t["t_s"], t["sent_per_s"], color="#999999", label="sent per second")
    top.plot(t["t_s"], t["done_per_s"], color=colour(broker), label="finished per second")
    top.set_ylabel("jobs per second")
    redelivered = result.get("redelivered_at_s") or []
    if redelivered:  # one tick per redelivered run, along the top of the rate panel
        top.plot(redelivered, [1.0] * len(redelivered), "|", color=MARK_COLOUR, markersize=10,
                 transform=top.get_xaxis_transform(), label=f"redelivered ({len(redelivered)} runs)")
    top.legend(frameon=False, fontsize=8)
    # An unreadable backlog (the broker was down) is a gap in the line, not a straight line across.
    bottom.plot(t["backlog_t_s"], [math.nan if y is None else y for y in t["backlog"]], color=colour(broker))
    bottom.set_ylabel(backlog_label(broker))
    bottom.set_xlabel("seconds since start")
    for event in result.get("events", []):
        for ax in (top, bottom):
            ax.axvline(event["t_s"], color=EVENT_COLOUR, linestyle="--")
        top.annotate(event["what"][:40], (event["t_s"], top.get_ylim()[1]), fontsize=7, color=EVENT_COLOUR,
                     xytext=(3, -10), textcoords="offset points")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return _finish(fig, f"{label(broker)}: {result['name']} ({setting_words(result)})", [result])


def setting_words(result: dict[str, Any]) -> str:
    """The setting a fault run used, for titles: the scenario's profile where it named one, else
    its broker options."""
    profile = result.get("fault", {}).get("profile")
    if profile:
        return profile
    options = {k: v for k, v in result["scenario"].get("broker_options", {}).items() if k != "reconnect_for_s"}
    if options:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in options.items())
    return f"the adapter's defaults, concurrency {result['scenario'].get('concurrency')}"


def backlog_label(broker: str) -> str:
    """What the backlog line counts (the sampler adds what the broker tells): not the same thing
    on both brokers, so the label says which."""
    from brokers import registry

    try:
        stats = registry.get(broker).capabilities.stats
    except KeyError:
        return "backlog, jobs"
    counted = [part for part in ("waiting", "delayed", "active") if part in stats]
    return "backlog, jobs\n(" + " + ".join(counted) + ("" if "active" in stats else "; not unacked") + ")"


def replication_cost(results: list[dict[str, Any]]) -> Figure:
    """The price of copies: closed-loop jobs/s and open-loop p50/p99 of the mix, one node vs
    replicated, per broker and setting (results of the replication scenario's cost runs). Each
    bar names its setting and, where its files record it, its level; the line under the title
    says what every node kept. The legend keys each broker's own colour (p99 solid, p50 light)."""
    cost = [r for r in results if r.get("fault", {}).get("cost_mode") and r.get("figures")]
    sides = sorted({(r["scenario"]["broker"], r["fault"]["profile"], r["fault"]["topology"]) for r in cost})
    fig, (left, right) = _subplots(1, 2, figsize=(10, 0.5 * len(sides) + 1.8))
    levels = {(r["scenario"]["broker"], r["fault"]["profile"]): (r.get("durability") or {}).get("level") for r in cost}
    names = [f"{label(b)}: {p}" + (f"\n'{registry.level_label(levels[(b, p)])}'" if levels.get((b, p)) else "")
             for b, p, _ in sides]
    keys: dict[str, Any] = {}
    for i, (broker, profile, _topology) in enumerate(sides):
        runs: dict[str, list[dict[str, Any]]] = {}
        for r in cost:
            if r["scenario"]["broker"] == broker and r["fault"]["profile"] == profile:
                runs.setdefault(r["fault"]["cost_mode"], []).append(r["figures"])
        if "closed" in runs:  # the median of the repetitions, whiskers min-max
            jobs = [f["throughput"]["out_per_s"] for f in runs["closed"]]
            mid = _median(jobs)
            left.barh(i, mid, color=colour(broker), xerr=[[mid - min(jobs)], [max(jobs) - mid]] if len(jobs) > 1
                      else None, capsize=3, ecolor="#333333")
        if "open" in runs:  # a percentile some run has too few samples for is not drawn, but said
            e2e = [f["latency_ms"]["end_to_end_intended"] for f in runs["open"]]
            for name, at, alpha in (("p99", i + 0.2, 1.0), ("p50", i - 0.2, 0.45)):
                values = [allowed(e, name) for e in e2e]
                if None in values:
                    right.text(0, at, f" {name}: too few samples", fontsize=7, va="center")
                    continue
                bar = right.barh(at, _median(values), height=0.4, color=colour(broker), alpha=alpha)
                keys.setdefault(f"{label(broker)} {name}", bar)
    for ax in (left, right):
        ax.set_yticks(range(len(sides)))
        ax.grid(True, axis="x", alpha=0.3)
    left.set_yticklabels(names, fontsize=8)
    right.set_yticklabels([])
    left.set_xlabel("jobs finished per second (closed loop, mix)")
    right.set_xlabel("end-to-end ms (open loop, mix)")
    if keys:
        right.legend(keys.values(), keys.keys(), frameon=False, fontsize=8, ncol=2, loc="lower center",
                     bbox_to_anchor=(0.5, 1.0))
    nodes = promises.nodes(cost)
    recorded = any(levels.values())
    note = f"; {promises.FROM_SETTINGS}" if any(promises.kept(r).from_settings for r in cost) else ""
    said = (("Durability: each bar's level under its name; " if recorded else
             "Durability: these files record no level for the settings; ")
            + (f"every node kept {nodes}" if nodes else "what every node kept is not recorded") + note)
    return _finish(fig, "The cost of replication: one node vs copies", cost, durability=said)


def failover_timeline(result: dict[str, Any]) -> Figure:
    """Jobs accepted (per 100 ms, as a rate) and finished per second around a failover, with the
    fault and the moment the broker named a new leader marked."""
    f, fault = result["figures"], result.get("fault", {})
    broker = result["scenario"]["broker"]
    t = f["timeline"]
    tenths = t.get("accepted_per_100ms", [])
    fig, ax = _subplots(figsize=(8, 3.9))
    ax.plot([i / 10 for i in range(len(tenths))], [n * 10 for n in tenths], color="#999999", linewidth=0.8,
            label="accepted (per 100 ms, as jobs/s)")
    ax.plot(t["t_s"], t["done_per_s"], color=colour(broker), label="finished per second")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("jobs per second")
    for event in result.get("events", []):
        at = fault.get("fault_at_s") or event["t_s"]  # the action may look the leader up first
        ax.axvline(at, color=EVENT_COLOUR, linestyle="--")
        ax.annotate(event["what"].split(";")[0].split(" (")[0][:40], (at, 0.97), xycoords=("data", "axes fraction"),
                    fontsize=7, color=EVENT_COLOUR, xytext=(3, -10), textcoords="offset points")
        if fault.get("failover_s") is not None:
            promoted = at + fault["failover_s"]
            ax.axvline(promoted, color=MARK_COLOUR, linestyle=":")
            ax.annotate(f"new leader (+{fault['failover_s']} s)", (promoted, 0.85), xycoords=("data", "axes fraction"),
                        fontsize=7, color=MARK_COLOUR, xytext=(3, -10), textcoords="offset points")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    title = (f"{label(broker)}: {fault.get('fault', 'failover')} ({fault.get('profile', '')})\n"
             f"lost {f.get('lost')}, duplicated {f.get('duplicated')}, refused {f.get('rejected', 0)}")
    return _finish(fig, title, [result])
