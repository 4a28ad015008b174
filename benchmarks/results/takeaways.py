"""One or two sentences under each plot and table of the report, computed from the same
results files as the plot: what a reader should see in it, with the figure that shows it.

Each function returns "" when its results do not hold what it needs (the report then prints
nothing under the plot rather than a sentence that is not backed by a number). A percentile is
quoted only when its histogram has the samples it needs, and always with its count
(:mod:`.percentiles`); otherwise the sentence says how few samples there were.
"""

from __future__ import annotations

import statistics
from typing import Any

from brokers import registry
from brokers.registry import level_label, split_level

from ..harness.metrics import count_of, recorded, value_at_percentile
from .percentiles import allowed, n_text, of_summary, q_of, words
from .plots import label, merged
from .scenario_plots import SEED_ENQUEUE_MS, level_order

Runs = list[dict[str, Any]]


def _by_kind(runs: Runs) -> dict[str, Runs]:
    out: dict[str, Runs] = {}
    for r in runs:
        if r.get("figures"):
            out.setdefault(r["scenario"]["broker"], []).append(r)
    return out


def _median(runs: Runs, get: Any) -> float | None:
    values = [v for r in runs if (v := get(r["figures"])) is not None]
    return statistics.median(values) if values else None


def _pair(runs: Runs) -> tuple[str, str] | None:
    """The two brokers the runs compare, in the registry's order (its compared kinds first),
    or None unless the runs hold exactly two kinds."""
    present = _by_kind(runs)
    order = registry.compared_kinds() + [k for k in registry.kinds() if k not in registry.compared_kinds()]
    kinds = [k for k in order if k in present] + sorted(k for k in present if k not in order)
    return (kinds[0], kinds[1]) if len(kinds) == 2 else None


def throughput(runs: Runs) -> str:
    pair = _pair(runs)
    if pair is None:
        return ""
    a, b = pair
    ratios = {}
    for profile in sorted({r["scenario"]["profile"] for r in runs}):
        cell = [r for r in runs if r["scenario"]["profile"] == profile and r["scenario"]["mode"] == "closed"]
        x = _median([r for r in cell if r["scenario"]["broker"] == a], lambda f: f["throughput"]["out_per_s"])
        y = _median([r for r in cell if r["scenario"]["broker"] == b], lambda f: f["throughput"]["out_per_s"])
        if x and y:
            ratios[profile] = x / y
    if not ratios:
        return ""
    low, high = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
    text = (f"{label(a)} finished x{ratios[low]:.2f} ({low}) to x{ratios[high]:.2f} ({high}) the jobs per second of "
            f"{label(b)}.")
    # Why, only where the runs show it: the ratio falls as the job's own run time (open-loop p50) grows.
    p50 = {p: _median([r for r in runs if r["scenario"]["profile"] == p and r["scenario"]["mode"] == "open"],
                      lambda f: allowed(f["latency_ms"]["end_to_end_intended"], "p50")) for p in ratios}
    order = sorted((p for p in ratios if p50[p] is not None), key=lambda p: p50[p])
    if len(order) > 2 and all(ratios[x] >= ratios[y] for x, y in zip(order, order[1:])):
        text += (" The gap narrows as jobs get longer (ordered by their open-loop p50): the broker's own cost per "
                 "job is a smaller part of a long job's time.")
    return text


def percentiles(runs: Runs) -> str:
    opened = [r for r in runs if r["scenario"]["mode"] == "open" and r.get("figures")]
    if not opened:
        return ""
    behind = sorted({f"{label(r['scenario']['broker'])} {r['scenario']['profile']}" for r in opened
                     if r["figures"]["throughput"]["out_per_s"] < 0.98 * r["figures"]["throughput"]["in_per_s"]})
    if behind:
        return "Finished fewer jobs per second than were sent (a backlog grew, latency with it): " + ", ".join(behind)
    bursts = {r["scenario"].get("burst_every_s") for r in opened} - {None, 0}
    return ("Every open-loop run finished jobs as fast as they were sent, so these percentiles are each job type's "
            "own run time plus queueing" + (f" behind the bursts sent every {min(bursts):g} s" if bursts else "")
            + ", not a backlog.")


def _open_histograms(runs: Runs, profile: str, metric: str) -> list[tuple[str, Any]]:
    """(broker kind, its open-loop runs' ``metric`` histograms merged), Redis first."""
    out = []
    for kind, mine in sorted(_by_kind(runs).items(), reverse=True):
        opened = [r for r in mine if r["scenario"]["mode"] == "open" and r["scenario"]["profile"] == profile
                  and r.get("histograms")]
        if opened:
            out.append((kind, merged(opened, metric)))
    return out


def _quoted(hist: Any, *names: str) -> str:
    """Percentiles of a merged histogram, each under the rule, with the count once:
    "p50 2.41 ms, p99.9: too few samples (...)"."""
    n, most = hist.get_total_count(), hist.get_max_value() / 1000
    said = [words(name, value_at_percentile(hist, q_of(name)) / 1000, n, most, with_n=False) for name in names]
    return ", ".join(said) + f" ({n_text(n)}, the repetitions together)"


def tail(runs: Runs, profile: str = "mix") -> str:
    parts = []
    for kind, hist in _open_histograms(runs, profile, "end_to_end_intended"):
        parts.append(f"{label(kind)} " + _quoted(hist, "p50", "p99", "p99_9"))
    if not parts:
        return ""
    return (f"{'; '.join(parts)}. The log-y panel shows the slowest jobs, which a linear CDF squeezes into its "
            "top row of pixels: read the tails there, the bulk on the left.")


def publish(runs: Runs, profile: str = "mix") -> str:
    parts = []
    for kind, hist in _open_histograms(runs, profile, "publish"):
        total = hist.get_total_count() or 1
        over = sum(count for value, count in recorded(hist) if value / 1000 > SEED_ENQUEUE_MS)
        parts.append(f"{label(kind)}: {over:,} of {total:,} calls over {SEED_ENQUEUE_MS:.0f} ms, "
                     + words("p99", value_at_percentile(hist, 99) / 1000, total, hist.get_max_value() / 1000,
                             with_n=False))
    if not parts:
        return ""
    return ("The seed's 50 ms is far to the right of almost every call here (client and broker on one host): "
            + "; ".join(parts) + ". Across a network, add one round trip per call.")


# A curve is "flat" while its p99 stays within this factor of the lowest step's.
FLAT_FACTOR = 1.5
# More processes "scale" when throughput grows by at least this share of the added processes.
SCALING_WELL = 0.7
SCALING_POORLY = 0.25


def _span(values: list[float], fmt: str = "{:,.0f}") -> str:
    """A median with its min-max when there are several values."""
    mid = fmt.format(statistics.median(values))
    return mid if len(values) < 2 or min(values) == max(values) else \
        f"{mid} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _p99_rise(run: dict[str, Any]) -> tuple[float, float, float] | None:
    """(p99 at the lowest step, p99 at the last sustainable step, that step's rate) of one sweep."""
    steps = [s for s in run.get("steps") or [] if s.get("sustainable") and s.get("figures")]
    if len(steps) < 2:
        return None
    first = steps[0]["figures"]["latency_ms"]["end_to_end_intended"].get("p99")
    last = steps[-1]["figures"]["latency_ms"]["end_to_end_intended"].get("p99")
    if not first or not last:
        return None
    return first, last, steps[-1]["offered_rate"]


def sweep(sweeps: Runs) -> str:
    """Per broker: the largest sustainable rate (median over repeated sweeps, with its range) and
    what p99 did on the way there, read off the curve itself: flat only where it stayed within
    x1.5 of the lowest step's p99."""
    parts = []
    for kind, mine in sorted(_by_kind(sweeps).items(), reverse=True):
        best = [r["max_sustainable_rate"] for r in mine if r.get("max_sustainable_rate")]
        rises = [x for r in mine if (x := _p99_rise(r))]
        if not best:
            continue
        text = f"{label(kind)} sustained up to {_span(best)} jobs/s"
        if rises:
            first = statistics.median(x[0] for x in rises)
            last = statistics.median(x[1] for x in rises)
            shape = "stayed flat" if last <= FLAT_FACTOR * first else f"rose x{last / first:.1f}"
            text += f"; p99 {shape} before that, {first:,.1f} -> {last:,.1f} ms"
        parts.append(text + (f" ({len(mine)} sweeps)" if len(mine) > 1 else ""))
    if not parts:
        return ""
    return ("Sustainable = p99 under the limit and every job finished. " + "; ".join(parts)
            + ". Past the last sustainable step latency climbs steeply: the consumers no longer keep up.")


def scaling(results: Runs) -> str:
    """Throughput from the fewest to the most consumer processes (medians over repetitions), and
    a sentence about why only where the curve shows it: near-linear, little, or in between."""
    parts, gains = [], []
    for kind, mine in sorted(_by_kind(results).items(), reverse=True):
        by_n: dict[int, list[float]] = {}
        for r in mine:
            if r["scenario"]["mode"] == "closed":
                by_n.setdefault(r["scenario"]["consumers"], []).append(r["figures"]["throughput"]["out_per_s"])
        if len(by_n) < 2:
            continue
        n0, n1 = min(by_n), max(by_n)
        y0, y1 = statistics.median(by_n[n0]), statistics.median(by_n[n1])
        if not y0:
            continue
        gain = (y1 / y0 - 1) / (n1 / n0 - 1)   # 1: linear; 0: none
        gains.append(gain)
        parts.append(f"{label(kind)} {_span(by_n[n0])} -> {_span(by_n[n1])} jobs/s from {n0} to {n1} processes "
                     f"(x{y1 / y0:.2f})")
    if not parts:
        return ""
    cores = (results[0].get("environment", {}).get("machine", {}) or {}).get("cores", "?")
    if all(g >= SCALING_WELL for g in gains):
        why = "both scaled close to linearly: the consumers, not the broker, were the limit"
    elif all(g <= SCALING_POORLY for g in gains):
        why = (f"little gain: on {cores} cores shared with the broker, more consumer processes mostly compete "
               "for the same CPU")
    else:
        why = "they scale differently: compare each broker's own curve (and its broker CPU per job)"
    return f"{'; '.join(parts)}. {why[0].upper() + why[1:]}."


def reliability(rows: Runs) -> str:
    if not rows:
        return ""
    met = sum(1 for r in rows if r["met"])
    losing = sorted({f"{label(r['broker'])} {r['profile']}" for r in rows if r.get("lost")})
    text = f"{met} of {len(rows)} rows met their expectation."
    if losing:
        text += (" Accepted jobs were lost only where the setting does not promise to keep them: "
                 + ", ".join(losing) + ".")
    return text


def recovery(faults: Runs) -> str:
    crashes = [r for r in faults if r["name"].startswith("worker-crash") and r.get("fault", {}).get("recovery_last_s")
               is not None]
    locked = sorted((r["scenario"]["broker_options"]["lock_duration_ms"],
                     r["scenario"]["broker_options"].get("stalled_interval_ms", 30000), r["fault"]["recovery_last_s"])
                    for r in crashes if "lock_duration_ms" in r["scenario"]["broker_options"])
    other = [r for r in crashes if "lock_duration_ms" not in r["scenario"]["broker_options"]]
    if not locked:
        return ""
    (lock, check, longest), (short, short_check, shortest) = locked[-1], locked[0]
    defaults = " (BullMQ's defaults)" if (lock, check) == (30000, 30000) else ""
    text = (f"On Redis a killed worker's jobs wait for its lock to expire and a stalled check to find them: back "
            f"after {longest:.1f} s with a {lock / 1000:g} s lock and a check every {check / 1000:g} s{defaults}, "
            f"{shortest:.2f} s with a {short / 1000:g} s lock and a check every {short_check / 1000:g} s (the "
            "scenario changes the two together). "
            "A shorter "
            "lock recovers sooner but must be renewed more often, and a worker stalled longer than it (a long "
            "GC pause, a blocked event loop) has its job run twice.")
    if other:
        text += (f" RabbitMQ returned them {other[0]['fault']['recovery_last_s']:.2f} s after the kill, because the "
                 "kernel closed the dead process's socket; a host that vanishes is noticed only by the heartbeat "
                 "timeout (60 s by default), which these runs do not measure.")
    return text


def memory(faults: Runs) -> str:
    growth = [r for r in faults if r["name"].startswith("backpressure-growth")]
    parts = []
    for r in growth:
        f, fault = r.get("figures") or {}, r["fault"]
        publish = f.get("latency_ms", {}).get("publish", {})
        backlog = max((b for b in f.get("timeline", {}).get("backlog", []) if b is not None), default=0)
        if fault.get("idle_rss_mb") is None:
            parts.append(f"{label(r['scenario']['broker'])} grew by {fault.get('memory_growth_mb')} MB to hold "
                         f"{backlog:,} waiting jobs and refused none (it grows until maxmemory)")
        else:
            parts.append(f"{label(r['scenario']['broker'])} grew {fault.get('memory_growth_mb')} MB (process RSS) "
                         f"and its memory alarm then blocked publishers: nothing refused, but a publish waited up to "
                         f"{(publish.get('max') or 0) / 1000:,.1f} s")
    return ("; ".join(parts) + ". Without a bound (Redis maxmemory, a queue length limit) neither refuses a job: "
            "Redis spends memory, RabbitMQ stalls the producer." if parts else "")


def durability(runs: Runs) -> str:
    """The mix at each level, per broker: jobs/s and publish p99, each level's jobs/s against
    the memory level's, and which level a broker has no side at (nothing is paired there)."""
    runs = [r for r in runs if r["scenario"].get("label", "").startswith("durability-")]
    parts = []
    for kind, mine in sorted(_by_kind(runs).items(), reverse=True):
        cells, rates = [], {}
        for level in level_order(r["scenario"].get("durability", "") for r in mine):
            cell = [r for r in mine if r["scenario"].get("durability") == level]
            jobs = _median([r for r in cell if r["scenario"]["mode"] == "closed"],
                           lambda f: f["throughput"]["out_per_s"])
            publish = [r["figures"]["latency_ms"]["publish"] for r in cell
                       if r["scenario"]["mode"] == "open" and r.get("figures")]
            if jobs and publish:  # the median p99 of the runs, when every run has the samples for one
                values = [allowed(f, "p99") for f in publish]
                counts = [count_of(f) for f in publish]
                fewest = None if None in counts else min(counts)  # type: ignore[type-var]
                pub = statistics.median(values) if None not in values else None  # type: ignore[type-var]
                name = (cell[0].get("durability") or {}).get("profile", level)
                cells.append(f"'{level_label(level)}' ({name}): {jobs:,.0f} jobs/s, "
                             f"publish {words('p99', pub, fewest)}")
                rates[level] = jobs
        if cells:
            floor = next((lv for lv in ("memory", "in-memory") if rates.get(lv)), None)
            cost = "".join(f"; '{level_label(lv)}': x{rates[lv] / rates[floor]:.2f} the jobs/s of "
                           f"'{level_label(floor)}'" for lv in rates if floor and lv != floor)
            parts.append(f"{label(kind)}: " + "; ".join(cells) + cost)
    if not parts:
        return ""
    kinds, alone = _by_kind(runs), []
    for lv in level_order(r["scenario"].get("durability", "") for r in runs):
        have = {r["scenario"]["broker"] for r in runs if r["scenario"].get("durability") == lv}
        missing = " or ".join(label(k) for k in sorted(kinds) if k not in have)
        if not missing:
            continue
        base, variant = split_level(lv)
        alone.append(f"'{level_label(lv)}' is {' and '.join(label(k) for k in sorted(have))}'s second profile with "
                     f"the promise '{level_label(base)}': compare it with {missing}'s '{level_label(base)}' bar"
                     if variant else f"'{level_label(lv)}' has no {missing} bar: no {missing} setting gives that "
                     "promise, so nothing is paired with it")
    return (". ".join(parts + alone) + ". Each level's bars were measured side by side in one run; read "
            "differences smaller than the whiskers as noise.")


def delays(faults: Runs) -> str:
    found = [r for r in faults if r["name"].startswith("delays-delays") and r["fault"].get("lateness_ms")]
    parts = [f"{label(r['scenario']['broker'])} {of_summary(r['fault']['lateness_ms'], 'p50')}, "
             f"{of_summary(r['fault']['lateness_ms'], 'p99')}, {r['fault'].get('early', 0)} early" for r in found]
    if not parts:
        return ""
    return ("No delayed job ran early; how late they ran depends on how each side wakes up: BullMQ-style workers "
            "poll the delayed set when its marker says a job is due, RabbitMQ dead-letters from fixed delay levels "
            f"({'; '.join(parts)}).")


def failovers(rows: Runs) -> str:
    """The failover rows: per broker, the worst loss and the longest stretch with nothing accepted."""
    parts = []
    for kind in sorted({r["broker"] for r in rows}, reverse=True):
        mine = [r for r in rows if r["broker"] == kind]
        lost = max((r["lost"] for r in mine if r["lost"] is not None), default=None)
        down = max((r["unavailable_s"] for r in mine if r.get("unavailable_s") is not None), default=None)
        losing = sorted({r["profile"].split(":")[0] for r in mine if r["lost"]})
        doubt = sum(r.get("in_doubt") or 0 for r in mine)
        stuck = [r["profile"] for r in mine if r.get("resumed") is False]
        text = f"{label(kind)}: at most {lost:,} accepted jobs lost" if lost is not None else f"{label(kind)}:"
        if losing:
            text += " (" + ", ".join(losing) + ")"
        if down is not None:
            text += f", at most {down:g} s with nothing accepted"
        if stuck:
            text += f"; acceptances never resumed in {len(stuck)} run(s) ({', '.join(sorted(set(stuck)))})"
        if doubt:
            text += (f"; {doubt:,} jobs in doubt in all (told neither accepted nor refused: the notes say how many "
                     "ran)")
        parts.append(text)
    return ("; ".join(parts) + ". A kill is the easy case for both; a hung or cut-off leader is where they part: "
            "compare the SIGSTOP and partition rows." if parts else "")


def replication_cost(faults: Runs) -> str:
    """The replication scenario's cost runs: closed-loop jobs/s of each replicated setting against
    each one-node row that keeps what its nodes keep (the same ``node_level`` in the results
    files: the copies are then the only difference), naming that row and the promise of each side
    (medians of the repetitions). Older files record no level: every one-node row of the kind is
    named, with a word that the per-node durability was not recorded."""
    rates: dict[tuple[str, str], list[float]] = {}
    said: dict[tuple[str, str], dict[str, Any]] = {}
    for r in faults:
        if r.get("fault", {}).get("cost_mode") == "closed" and r.get("figures"):
            key = (r["scenario"]["broker"], r["fault"]["profile"])
            rates.setdefault(key, []).append(r["figures"]["throughput"]["out_per_s"])
            said[key] = r.get("durability") or {}
    parts, unrecorded, kept = [], False, set()
    for kind in sorted({k for k, _ in rates}, reverse=True):
        mine = {p: statistics.median(v) for (k, p), v in rates.items() if k == kind}
        singles = [p for p in mine if p.startswith("one node")]
        for p, jobs in mine.items():
            if p in singles:
                continue
            level = said[(kind, p)].get("level")
            bases = [s for s in singles if said[(kind, s)].get("node_level")
                     and said[(kind, s)]["node_level"] == said[(kind, p)].get("node_level")]
            if bases:
                kept.add(level_label(said[(kind, p)]["node_level"]))
            else:
                bases, unrecorded = singles, unrecorded or bool(singles)
            ratios = [f"x{jobs / mine[s]:.2f} the jobs/s of '{s}'" for s in bases if mine[s]]
            if ratios:
                promise = f" ({level_label(level)})" if level else ""
                parts.append(f"{label(kind)} {p}{promise}: " + " and ".join(ratios))
    if not parts:
        return ""
    same = ("; each against one node that keeps what each of its nodes keeps (" + ", ".join(sorted(kept))
            + "), so the copies are the difference") if not unrecorded else (
        "; these results do not record what each node kept, so one node and the copies may differ in more "
        "than the copies")
    return ("; ".join(parts) + same + ". Here every copy shares the same 2 cores, so this overstates the CPU cost "
            "of copies on separate machines, where they cost network round trips instead.")


def failover_timeline(result: dict[str, Any]) -> str:
    f, fault = result.get("figures") or {}, result.get("fault", {})
    text = (f"{label(result['scenario']['broker'])}, {fault.get('profile', '')}: {fault.get('fault', 'the fault')}; "
            f"lost {f.get('lost')}, duplicated {f.get('duplicated')}")
    if fault.get("unavailable_s") is not None:
        text += f", nothing accepted for {fault['unavailable_s']:g} s"
        if fault.get("resumed") is False:
            text += " (to the end of the run: acceptances never resumed)"
    if f.get("in_doubt"):
        o = f.get("in_doubt_outcome", {})
        text += f", {f['in_doubt']:,} in doubt (ran {o.get('ran', 0):,}, never ran {o.get('never_ran', 0):,})"
    if fault.get("failover_s") is not None:
        text += f", a new leader after {fault['failover_s']:g} s"
    return text + "."
