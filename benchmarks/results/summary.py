"""The summary table of a comparison: one row per (job type, broker, durability), closed-loop
throughput beside open-loop latency. The console (``brokerbench run``) and the report print the
same columns from the same functions.

A cell (broker x workload x mode) run k times gives each figure as the median of its k values
with their min-max; a figure whose min-max spans more than :data:`NOISY` of its median is
flagged noisy. The ratio between two brokers is taken per repetition pair (A's run i against
B's run i, measured side by side), then given as the median with its min-max.

Latency percentiles follow one rule (:mod:`.percentiles`): a percentile is printed only when
every run of its cell has the samples it needs; each is shown beside its sample count.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

from ..harness.metrics import SAMPLES_BEYOND, count_of, min_samples, printable
from . import cpu_cost
from .percentiles import cell, label, q_of, sig, words

SUMMARY_HEADER = ["job type", "broker", "durability", "max jobs/s", "jobs/CPU-s", "jobs/broker CPU-s", "bound by",
                  "open loop in/s", "p50 ms", "p99 ms", "p99.9 ms", "latency n", "publish p99 ms", "publish n",
                  "lost", "dup", "in doubt"]
NOISY = 0.10  # a spread (max - min) above this share of the median: the figure is noisy

Getter = Callable[[dict[str, Any]], Any]
FIGURES: dict[str, dict[str, Getter]] = {
    "closed": {"max_jobs_per_s": lambda f: f["throughput"]["out_per_s"],
               "jobs_per_cpu_s": lambda f: f["jobs_per_cpu_s"],
               "jobs_per_broker_cpu_s": cpu_cost.jobs_per_broker_cpu_s},
    "open": {"rate": lambda f: f["throughput"]["in_per_s"],
             "p50_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("p50"),
             "p99_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("p99"),
             "p999_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("p99_9"),
             "publish_p99_ms": lambda f: f["latency_ms"]["publish"].get("p99"),
             # what the percentiles rest on: samples per run (n) and the max, shown where n is too small
             "latency_n": lambda f: f["latency_ms"]["end_to_end_intended"].get("count"),
             "latency_max_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("max"),
             "publish_n": lambda f: f["latency_ms"]["publish"].get("count"),
             "publish_max_ms": lambda f: f["latency_ms"]["publish"].get("max")},
}
# Each percentile column: its percentile, the key of its runs' sample counts and of their max.
PERCENTILE_CELLS = {"p50_ms": ("p50", "latency_n", None), "p99_ms": ("p99", "latency_n", None),
                    "p999_ms": ("p99_9", "latency_n", "latency_max_ms"),
                    "publish_p99_ms": ("p99", "publish_n", None)}
COUNTS = ("latency_n", "publish_n")


@dataclass(frozen=True)
class Spread:
    """A figure over repetitions: median, min, max, how many."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Spread | None":
        values = [v for v in values if v is not None]
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def relative(self) -> float:
        """(max - min) / median: 0 for one value."""
        return (self.high - self.low) / abs(self.median) if self.median else 0.0

    @property
    def noisy(self) -> bool:
        return self.n > 1 and self.relative > NOISY


def durability_words(result: dict[str, Any]) -> str:
    """How tables and plots name a run's durability: the level by its promise and the profile
    that gave it ("on disk: AOF always"); an older file's level name as "<name> (old level)";
    the profile alone, or the level alone, when only one is known; "-" when neither is."""
    from brokers.registry import level_label

    said = result.get("durability") or {}
    level = said.get("level") or result["scenario"].get("durability") or ""
    profile = said.get("profile")
    if level and profile:
        return f"{level_label(level)}: {profile}"
    return profile or level_label(level)



def contender(scenario: dict[str, Any]) -> str:
    """The contender client a run used (``brokers.clients``), "" for the broker kind's own adapter."""
    client = scenario.get("client") or ""
    return "" if client == scenario.get("broker") else client


def who(row: dict[str, Any]) -> str:
    """How a table names a row's broker and client: the kind, "kind · client" for a contender."""
    return row["broker"] + (f" · {row['client']}" if row.get("client") else "")


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (profile, broker, durability, client: our adapter or a contender, never
    mixed): each figure's median over the repetitions in
    ``row[key]``, its :class:`Spread` in ``row["spread"][key]``, noisy keys in ``row["noisy"]``,
    and the results files it was computed from in ``row["sources"]`` (where the runs name them);
    what bound its closed-loop runs in ``row["bound_by"]`` (:func:`.cpu_cost.bound_summary`)."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    values: dict[tuple[str, str, str, str], dict[str, list[float]]] = {}
    costs: dict[tuple[str, str, str, str], list[cpu_cost.Cost]] = {}
    for r in results:
        sc, f = r["scenario"], r["figures"]
        key = (sc["profile"], sc["broker"], durability_words(r), contender(sc))
        row = rows.setdefault(key, {"profile": key[0], "broker": key[1], "durability": key[2], "client": key[3],
                                    "repetitions": 0,
                                    "sources": [], "level": (r.get("durability") or {}).get("level")
                                    or sc.get("durability", "")})
        if r.get("source_file"):
            row["sources"].append(r["source_file"])
        if f is None:
            row["error"] = "; ".join(r["errors"])
            continue
        row["lost"] = row.get("lost", 0) + f["lost"]
        row["duplicated"] = row.get("duplicated", 0) + f["duplicated"]
        if "in_doubt" in f and row.get("in_doubt", 0) is not None:  # results files from run/3 on
            row["in_doubt"] = row.get("in_doubt", 0) + f["in_doubt"]
        else:  # an older file cannot tell: the row's sum would be partial
            row["in_doubt"] = None
        if r["errors"]:
            row["error"] = "; ".join(r["errors"])
        for name, get in FIGURES.get(sc["mode"], {}).items():
            values.setdefault(key, {}).setdefault(name, []).append(get(f))
        if sc["mode"] == "closed" and (cost := cpu_cost.of(r)) is not None:
            costs.setdefault(key, []).append(cost)
    for key, row in rows.items():
        row["bound_by"] = cpu_cost.bound_summary(costs.get(key, []))
        spreads = {name: s for name, found in values.get(key, {}).items() if (s := Spread.of(found)) is not None}
        row.update({name: s.median for name, s in spreads.items()})
        row["spread"] = spreads
        row["noisy"] = sorted(name for name, s in spreads.items() if s.noisy and name not in COUNTS)
        row["repetitions"] = max((s.n for s in spreads.values()), default=0)
    return sorted(rows.values(), key=_order)


def _order(row: dict[str, Any]) -> tuple[int, int, tuple[int, str], str, str]:
    """Job types in the comparison's order, then brokers in the registry's, then levels weakest
    first (:func:`brokers.registry.level_rank`), our adapter before its contenders."""
    from brokers import registry

    from ..harness.suite import PROFILES_IN_ORDER

    kinds = registry.kinds()
    profile = PROFILES_IN_ORDER.index(row["profile"]) if row["profile"] in PROFILES_IN_ORDER else 99
    return (profile, kinds.index(row["broker"]) if row["broker"] in kinds else 99,
            registry.level_rank(row.get("level", row.get("durability")) or ""), row.get("durability", ""),
            row.get("client", ""))


def ratio_rows(results: list[dict[str, Any]], first: str, second: str) -> list[dict[str, Any]]:
    """Per job type, ``first``/``second`` for throughput (closed loop) and p99 (open loop), each
    taken per repetition pair (same repetition number, same durability level) and summarised. A
    pair in which either run has too few samples for a p99 (:func:`~benchmarks.harness.metrics.printable`)
    gives no p99 ratio."""
    by: dict[tuple[str, str, str, int], dict[str, float | None]] = {}
    for r in results:
        sc, f = r["scenario"], r["figures"]
        if f is None or sc["mode"] not in ("closed", "open") or sc["broker"] not in (first, second) or contender(sc):
            continue  # our adapters' runs only: a contender's are compared in their own table
        name, get = ("max_jobs_per_s", FIGURES["closed"]["max_jobs_per_s"]) if sc["mode"] == "closed" \
            else ("p99_ms", FIGURES["open"]["p99_ms"])
        cell = (sc["profile"], sc.get("durability", ""), name, sc.get("repetition", 0))
        value = get(f)
        if name == "p99_ms" and not printable(99.0, count_of(f["latency_ms"]["end_to_end_intended"])):
            value = None  # too few samples for a p99: this pair gives no ratio
        by.setdefault(cell, {})[sc["broker"]] = value
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (profile, level, name, _), pair in by.items():
        a, b = pair.get(first), pair.get(second)
        if a is None or b is None or not b:
            continue
        row = out.setdefault((profile, level), {"profile": profile, "durability": level, "_ratios": {}})
        row["_ratios"].setdefault(name, []).append(a / b)
    for row in out.values():
        for name, ratios in row.pop("_ratios").items():
            row[name] = Spread.of(ratios)
    return sorted(out.values(), key=lambda row: _order({**row, "broker": first}))


def fmt(value: Any, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def fmt_spread(spread: Spread | None, pattern: str | Callable[[float], str] = "{:,.0f}", unit: str = "",
               sep: str = " ") -> str:
    """``median (min-max)``, with ``*`` when noisy; the bare value for one repetition. ``sep``
    goes between the median and the range (a newline in a console table). ``pattern``: a
    format string, or a function from a value to its text."""
    if spread is None:
        return "-"
    form = pattern.format if isinstance(pattern, str) else pattern
    text = form(spread.median) + unit
    if spread.n > 1:
        text += f"{sep}({form(spread.low)}-{form(spread.high)})" + ("*" if spread.noisy else "")
    return text


def fmt_counts(spread: Spread | None) -> str:
    """Samples per run: "12,340", or "11,900-12,500" over several runs (never flagged noisy)."""
    if spread is None:
        return "n unknown"
    low, high = int(spread.low), int(spread.high)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def percentile_cell(row: dict[str, Any], key: str, sep: str = " ") -> str:
    """A percentile column of a summary row: the median (min-max) of its runs to three
    significant digits when every run has the samples the percentile needs; else "n too small"
    (p99.9: the max of the runs, labelled "max"); "n unknown" when the runs kept no count."""
    spread = row.get("spread") or {}
    name, counts, most = PERCENTILE_CELLS[key]
    if key not in spread:
        return "-"
    fewest = int(spread[counts].low) if counts in spread else None
    if fewest is not None and printable(q_of(name), fewest):
        return fmt_spread(spread[key], sig, sep=sep)
    if fewest is not None and most and most in spread:
        return "max " + fmt_spread(spread[most], sig, sep=sep) + " (n too small)"
    return cell(name, None, fewest)


def percentile_spread(name: str, summaries: list[dict[str, Any]], unit: str = " ms") -> str:
    """Percentile ``name`` over several runs' summaries, in words: "p99 126 (113-165)* ms
    (n>=2,205 per run)" when every run has the samples it needs, else "p99: too few samples (...)"
    without its value (:func:`.percentiles.words`)."""
    counts = [count_of(f) for f in summaries]
    fewest = None if not counts or None in counts else min(counts)  # type: ignore[type-var]
    spread = Spread.of([f.get(name) for f in summaries])
    if spread is None or not printable(q_of(name), fewest):
        return words(name, None, fewest, unit=unit)
    return f"{label(name)} {fmt_spread(spread, sig)}{unit} (n>={fewest:,} per run)"


def summary_cells(row: dict[str, Any], broker: str, rate_unit: str = "", sep: str = " ") -> list[str]:
    """One summary row as text, in SUMMARY_HEADER's order (console table and report alike)."""
    spread = row.get("spread") or {}

    def cell(key: str, pattern: str, unit: str = "") -> str:
        if key in spread:
            return fmt_spread(spread[key], pattern, unit, sep)
        return fmt(row.get(key), pattern + unit)

    def latency(key: str) -> str:
        return percentile_cell(row, key, sep) if key in spread else "-"

    def counts(key: str) -> str:
        return fmt_counts(spread.get(key)) if any(k in spread for k in PERCENTILE_CELLS) else "-"

    return [row["profile"], broker, row.get("durability", "-"), cell("max_jobs_per_s", "{:,.0f}"),
            cell("jobs_per_cpu_s", "{:,.0f}"), cell("jobs_per_broker_cpu_s", "{:,.0f}"), row.get("bound_by", "-"),
            cell("rate", "{:,.0f}", rate_unit), latency("p50_ms"),
            latency("p99_ms"), latency("p999_ms"), counts("latency_n"), latency("publish_p99_ms"),
            counts("publish_n"), fmt(row.get("lost")), fmt(row.get("duplicated")), fmt(row.get("in_doubt"))]


def ratio_text(rows: list[dict[str, Any]], first_label: str, second_label: str) -> list[str]:
    """One line per job type: the ratios, per repetition pair, as median (min-max)."""
    lines = []
    for row in rows:
        parts = []
        if row.get("max_jobs_per_s"):
            parts.append(f"max jobs/s x{fmt_spread(row['max_jobs_per_s'], '{:.2f}')}")
        if row.get("p99_ms"):
            parts.append(f"open-loop p99 x{fmt_spread(row['p99_ms'], '{:.2f}')}")
        if parts:
            lines.append(f"{row['profile']}: {first_label} / {second_label}: " + ", ".join(parts))
    return lines


NOISY_NOTE = (f"median over the repetitions (min-max); * marks a spread over {NOISY:.0%} of the median: "
              "noisy, read it as a range")
SAMPLES_NOTE = ("Latency columns: three significant digits (the histograms' precision); n: the samples of each "
                f"run. A percentile is printed only when every run has at least {SAMPLES_BEYOND} / (1 - q) samples "
                f"(p50: {min_samples(50):,}, p99: {min_samples(99):,}, p99.9: {min_samples(99.9):,}); else "
                "\"n too small\", and for p99.9 the max, labelled as such")
