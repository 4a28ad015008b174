"""Plots of the scenarios' own figures and of distributions (matplotlib): memory under
backpressure, recovery for each lock duration / stalled-check pair, what durability costs, the
publish-latency histogram, delay lateness, and log-y tails. Same colours, captions and conventions as
:mod:`benchmarks.results.plots`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from matplotlib.figure import Figure

from brokers import registry
from brokers.registry import level_label, level_rank

from ..harness.metrics import decode, recorded, value_at_percentile
from .percentiles import allowed, words
from .plots import _finish, _median, _subplots, cdf_and_tail, colour, label, marker, merged, side_label

SEED_ENQUEUE_MS = 50.0          # the seed: "enqueue in 50 ms"
HEARTBEAT_DEFAULT_S = 60.0      # RabbitMQ's default heartbeat timeout (a lost host, not a closed socket)


def level_order(found: Iterable[str]) -> list[str]:
    """The durability levels in ``found`` (each once, "" left out) in the order plots and
    takeaways list them (:func:`brokers.registry.level_rank`)."""
    return sorted(set(found) - {""}, key=level_rank)


def memory_under_backpressure(faults: list[dict[str, Any]]) -> Figure | None:
    """Broker memory and backlog over time while producers outrun consumers (the backpressure
    scenario's growth runs): Redis grows with the backlog; RabbitMQ's memory alarm stops it by
    blocking publishers."""
    growth = [r for r in faults if r["name"].startswith("backpressure-growth") and r["fault"].get("memory_samples")]
    if not growth:
        return None
    fig, (top, bottom) = _subplots(2, 1, figsize=(7.5, 5.5), sharex=True)
    for r in growth:
        kind = r["scenario"]["broker"]
        samples = r["fault"]["memory_samples"]
        own = any(s[2] is not None for s in samples)
        points = [(s[0], s[2] if own else s[1]) for s in samples if (s[2] if own else s[1]) is not None]
        what = "used_memory" if own else "process RSS"
        top.plot([p[0] for p in points], [p[1] for p in points], color=colour(kind), label=f"{label(kind)} ({what})")
        idle = r["fault"].get("idle_rss_mb")
        limit = _alarm_limit(r)
        if idle is not None and limit is not None:
            top.axhline(limit, color=colour(kind), linestyle=":", alpha=0.7)
            top.text(0, limit, f" memory alarm set at idle RSS + {limit - idle:,.0f} MB ({limit:,.0f} MB)",
                     color=colour(kind), fontsize=7, va="bottom")
        timeline = r["figures"].get("timeline", {})
        backlog = [math.nan if b is None else b for b in timeline.get("backlog", [])]
        bottom.plot(timeline.get("backlog_t_s", []), backlog, color=colour(kind), label=label(kind))
    top.set_ylabel("broker memory, MB")
    top.set_ylim(bottom=0)
    top.legend(frameon=False, fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("jobs waiting")
    bottom.set_xlabel("seconds since the run started")
    bottom.set_ylim(bottom=0)
    bottom.grid(True, alpha=0.3)
    return _finish(fig, "Producers faster than consumers: memory and backlog over time", growth)


def _alarm_limit(result: dict[str, Any]) -> float | None:
    """The memory alarm's threshold in MB, from the expectation text ("idle + N MB") and idle RSS."""
    idle = result["fault"].get("idle_rss_mb")
    words = result["fault"].get("expectation", "").split("idle + ")
    if idle is None or len(words) < 2:
        return None
    try:
        return idle + float(words[1].split(" ")[0])
    except ValueError:
        return None


def _recovery_setting(options: dict[str, Any]) -> tuple[float, float]:
    """(lock duration, stalled-check interval) in seconds of a worker-crash run's options."""
    return options["lock_duration_ms"] / 1000, options.get("stalled_interval_ms", 30000) / 1000


def recovery_against_lock(faults: list[dict[str, Any]]) -> Figure | None:
    """Worker crash: when the killed worker's jobs ran again, for each Redis worker setting (the
    lock duration and the stalled-check interval, which the scenario changes together: each point
    is one pair, named on the x axis; the first to last redelivery measured; the band what that
    pair allows, from half the lock to the bound of the kind's ``crash_redelivery``, max(lock,
    2 x stalled interval) + stalled interval), beside RabbitMQ, which returns them when the dead
    consumer's connection closes."""
    crashes = [r for r in faults if r["name"].startswith("worker-crash") and r.get("figures")
               and r["fault"].get("recovery_last_s") is not None]
    if not crashes:
        return None
    fig, ax = _subplots(figsize=(8, 4.6))
    settings = sorted({_recovery_setting(r["scenario"]["broker_options"]) for r in crashes
                       if "lock_duration_ms" in r["scenario"]["broker_options"]})
    defaults: set[tuple[float, float]] = set()
    keyed: set[str] = set()
    for r in crashes:
        kind, options = r["scenario"]["broker"], r["scenario"]["broker_options"]
        first, last = r["fault"]["recovery_first_s"], r["fault"]["recovery_last_s"]
        if "lock_duration_ms" in options:
            lock, interval = _recovery_setting(options)
            bound = registry.get(kind).capabilities.crash_redelivery.bound_s(options) or lock
            x = settings.index((lock, interval))
            if "defaults" in r["fault"].get("profile", ""):
                defaults.add((lock, interval))
            ax.fill_between([x - 0.22, x + 0.22], lock / 2, bound, color=colour(kind), alpha=0.15, linewidth=0,
                            label=None if "band" in keyed else "what the pair allows: lock/2 to "
                                                               "max(lock, 2 x check) + check")
            ax.plot([x, x], [first, last], color=colour(kind), linewidth=3)
            ax.plot([x], [last], marker=marker(kind), color=colour(kind), linestyle="none",
                    label=None if kind in keyed else f"{label(kind)}: first to last redelivery")
            keyed |= {"band", kind}
            ax.annotate(f"{last:.2f} s", (x, last), textcoords="offset points", xytext=(7, -3), fontsize=7)
        else:
            ax.axhline(last, color=colour(kind), linestyle="--")
            ax.text(0.01, last, f" {label(kind)}: {last:.3f} s (connection closed by the kernel)",
                    color=colour(kind), fontsize=7, va="bottom", transform=ax.get_yaxis_transform())
            ax.axhline(HEARTBEAT_DEFAULT_S, color=colour(kind), linestyle=":", alpha=0.6)
            ax.text(0.01, HEARTBEAT_DEFAULT_S, f" {label(kind)}, a lost host: about the heartbeat timeout "
                    f"({HEARTBEAT_DEFAULT_S:.0f} s default; not measured)", color=colour(kind), fontsize=7,
                    va="bottom", transform=ax.get_yaxis_transform())
    ax.set_yscale("log")
    if settings:
        ax.set_xticks(range(len(settings)), [f"lock {lock:g} s /\ncheck {interval:g} s"
                                             + ("\n(BullMQ's defaults)" if (lock, interval) in defaults else "")
                                             for lock, interval in settings], fontsize=8)
        ax.set_xlim(-0.6, len(settings) - 0.4)
        ax.legend(frameon=False, fontsize=7, loc="center right")
    locked = sorted({label(r["scenario"]["broker"]) for r in crashes
                     if "lock_duration_ms" in r["scenario"]["broker_options"]})
    ax.set_xlabel(f"{' / '.join(locked) or 'Redis'} worker setting: lock duration / stalled-job check interval "
                  "(both change from point to point)", fontsize=9)
    ax.set_ylabel("kill to redelivery, s (log)")
    ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, "Worker killed: jobs back after the lock expires and a stalled check finds them",
                   crashes)


def _cell(runs: list[dict[str, Any]], kind: str, level: str, mode: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["scenario"]["broker"] == kind and r["scenario"]["mode"] == mode
            and r["scenario"].get("durability") == level and r.get("figures")]


def durability_cost(runs: list[dict[str, Any]]) -> Figure | None:
    """The mix at each durability level, measured side by side: closed-loop jobs/s and open-loop
    publish p99 (median of the repetitions, whiskers min-max); each bar names its profile. A
    level whose runs have too few publish calls for a p99 gets no bar, only those words."""
    runs = [r for r in runs if r["scenario"].get("label", "").startswith("durability-")]
    if not runs:
        return None
    kinds = sorted({r["scenario"]["broker"] for r in runs})
    levels = level_order(r["scenario"].get("durability", "") for r in runs)
    fig, axes = _subplots(1, 2, figsize=(10, 4.4))
    width = 0.8 / len(kinds)
    for ax, (mode, get, unit) in zip(axes, (("closed", lambda f: f["throughput"]["out_per_s"], "jobs finished per s"),
                                            ("open", lambda f: allowed(f["latency_ms"]["publish"], "p99"),
                                             "publish call p99, ms"))):
        for i, kind in enumerate(kinds):
            xs, ys, low, high, names = [], [], [], [], []
            for j, level in enumerate(levels):
                cell = _cell(runs, kind, level, mode)
                values = [v for r in cell if (v := get(r["figures"])) is not None]
                if mode == "open" and cell and len(values) < len(cell):  # some run lacks the samples
                    ax.text(j + (i - (len(kinds) - 1) / 2) * width, 0, "n too\nsmall", fontsize=6, ha="center",
                            va="bottom", color=colour(kind))
                    continue
                if not values:
                    continue
                y = _median(values)
                xs.append(j + (i - (len(kinds) - 1) / 2) * width)
                ys.append(y)
                low.append(y - min(values))
                high.append(max(values) - y)
                names.append((cell[0].get("durability") or {}).get("profile", level))
            bars = ax.bar(xs, ys, width, color=colour(kind), label=label(kind), yerr=[low, high], capsize=3,
                          ecolor="#333333")
            form = "{:,.0f}" if mode == "closed" else "{:.1f}"
            ax.bar_label(bars, labels=[f"{form.format(y)}\n{n}" for y, n in zip(ys, names)], fontsize=6.5, padding=2)
        ax.set_xticks(range(len(levels)), [level_label(lv).replace(", ", ",\n") for lv in levels], fontsize=8)
        ax.set_ylabel(unit)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.2)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_title("throughput, closed loop", fontsize=10)
    axes[1].set_title("publish latency, open loop at the same rate", fontsize=10)
    axes[0].legend(frameon=False, fontsize=8)
    levels_said = ", ".join(f"'{level_label(lv)}'" for lv in levels)
    return _finish(fig, "What durability costs: the mix at each level, side by side", runs,
                   durability=f"Durability: one level per group of bars ({levels_said}), read from the files; each "
                              "bar names its broker's profile at that level")


def publish_histogram(runs: list[dict[str, Any]], profile: str = "mix") -> Figure | None:
    """How long one publish call took, open loop (the repetitions merged): the seed says 50 ms."""
    opened = [r for r in runs if r["scenario"]["mode"] == "open" and r["scenario"]["profile"] == profile
              and r.get("histograms")]
    if not opened:
        return None
    fig, ax = _subplots(figsize=(7.5, 4))
    edges = [0.01 * 10 ** (i / 20) for i in range(101)]   # 10 µs to 1 s, 20 bins per decade
    top, used = 0.0, []
    for kind in sorted({r["scenario"]["broker"] for r in opened}):
        mine = [r for r in opened if r["scenario"]["broker"] == kind]
        hist = merged(mine, "publish")
        total = hist.get_total_count() or 1
        counts = [0] * (len(edges) - 1)
        for value, count in recorded(hist):
            ms = value / 1000
            at = min(max(int(math.log10(max(ms, edges[0]) / edges[0]) * 20), 0), len(counts) - 1)
            counts[at] += count
        shares = [c / total for c in counts]
        top = max(top, *shares)
        used += [i for i, c in enumerate(counts) if c]
        ax.stairs(shares, edges, color=colour(kind), linewidth=1.5,
                  label=f"{side_label(mine)}, "
                        + words("p99", value_at_percentile(hist, 99) / 1000, hist.get_total_count(),
                                hist.get_max_value() / 1000))
    if used:  # from the fastest call to past the seed's figure
        ax.set_xlim(edges[min(used)] / 2, max(edges[max(used) + 1] * 2, SEED_ENQUEUE_MS * 3))
    ax.axvline(SEED_ENQUEUE_MS, color="#444444", linestyle="--")
    ax.text(SEED_ENQUEUE_MS, top * 0.95, " the seed: 50 ms", fontsize=8, color="#444444")
    ax.set_xscale("log")
    ax.set_xlabel("one publish call, ms (log)")
    ax.set_ylabel("share of calls")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, f"Publish latency, one job per call ({profile}, open loop, all repetitions)", opened)


def delay_lateness(faults: list[dict[str, Any]]) -> Figure | None:
    """How late delayed jobs ran (the delays scenario, 0.25-3 s delays): CDF and its tail on a log axis."""
    found = [r for r in faults if r["name"].startswith("delays-delays") and r["fault"].get("lateness_histogram")]
    if not found:
        return None
    curves = []
    for r in found:
        kind = r["scenario"]["broker"]
        hist = decode(r["fault"]["lateness_histogram"])
        n, most = hist.get_total_count(), hist.get_max_value() / 1000
        said = [words(name, value_at_percentile(hist, q) / 1000, n, most, with_n=False)
                for name, q in (("p50", 50), ("p99", 99))]
        curves.append((kind, hist, f"{label(kind)}: " + ", ".join(said)))
    return cdf_and_tail(curves, "ran this late after its due time, ms (log)",
                        "Delayed jobs: lateness (CDF, and its tail on a log scale)", found)
