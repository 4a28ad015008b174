"""The summary table of a comparison: one row per (job type, broker, durability), closed-loop
throughput beside open-loop latency. The console (``brokerbench run``) and the report print the
same columns from the same functions.

A cell (broker x workload x mode) run k times gives each figure as the median of its k values
with their min-max; a figure whose min-max spans more than :data:`NOISY` of its median is
flagged noisy. The ratio between two brokers is taken per repetition pair (A's run i against
B's run i, measured side by side), then given as the median with its min-max.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

SUMMARY_HEADER = ["job type", "broker", "durability", "max jobs/s", "jobs/CPU-s", "open loop in/s", "p50 ms",
                  "p99 ms", "p99.9 ms", "publish p99 ms", "lost", "dup", "in doubt"]
NOISY = 0.10  # a spread (max - min) above this share of the median: the figure is noisy

Getter = Callable[[dict[str, Any]], Any]
FIGURES: dict[str, dict[str, Getter]] = {
    "closed": {"max_jobs_per_s": lambda f: f["throughput"]["out_per_s"],
               "jobs_per_cpu_s": lambda f: f["jobs_per_cpu_s"]},
    "open": {"rate": lambda f: f["throughput"]["in_per_s"],
             "p50_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("p50"),
             "p99_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("p99"),
             "p999_ms": lambda f: f["latency_ms"]["end_to_end_intended"].get("p99_9"),
             "publish_p99_ms": lambda f: f["latency_ms"]["publish"].get("p99")},
}


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



def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (profile, broker, durability): each figure's median over the repetitions in
    ``row[key]``, its :class:`Spread` in ``row["spread"][key]``, noisy keys in ``row["noisy"]``,
    and the results files it was computed from in ``row["sources"]`` (where the runs name them)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    values: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in results:
        sc, f = r["scenario"], r["figures"]
        key = (sc["profile"], sc["broker"], durability_words(r))
        row = rows.setdefault(key, {"profile": key[0], "broker": key[1], "durability": key[2], "repetitions": 0,
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
    for key, row in rows.items():
        spreads = {name: s for name, found in values.get(key, {}).items() if (s := Spread.of(found)) is not None}
        row.update({name: s.median for name, s in spreads.items()})
        row["spread"] = spreads
        row["noisy"] = sorted(name for name, s in spreads.items() if s.noisy)
        row["repetitions"] = max((s.n for s in spreads.values()), default=0)
    return sorted(rows.values(), key=_order)


def _order(row: dict[str, Any]) -> tuple[int, int, tuple[int, str], str]:
    """Job types in the comparison's order, then brokers in the registry's, then levels weakest
    first (:func:`brokers.registry.level_rank`)."""
    from brokers import registry

    from ..harness.suite import PROFILES_IN_ORDER

    kinds = registry.kinds()
    profile = PROFILES_IN_ORDER.index(row["profile"]) if row["profile"] in PROFILES_IN_ORDER else 99
    return (profile, kinds.index(row["broker"]) if row["broker"] in kinds else 99,
            registry.level_rank(row.get("level", row.get("durability")) or ""), row.get("durability", ""))


def ratio_rows(results: list[dict[str, Any]], first: str, second: str) -> list[dict[str, Any]]:
    """Per job type, ``first``/``second`` for throughput (closed loop) and p99 (open loop), each
    taken per repetition pair (same repetition number, same durability level) and summarised."""
    by: dict[tuple[str, str, str, int], dict[str, float | None]] = {}
    for r in results:
        sc, f = r["scenario"], r["figures"]
        if f is None or sc["mode"] not in ("closed", "open") or sc["broker"] not in (first, second):
            continue
        name, get = ("max_jobs_per_s", FIGURES["closed"]["max_jobs_per_s"]) if sc["mode"] == "closed" \
            else ("p99_ms", FIGURES["open"]["p99_ms"])
        cell = (sc["profile"], sc.get("durability", ""), name, sc.get("repetition", 0))
        by.setdefault(cell, {})[sc["broker"]] = get(f)
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


def fmt_spread(spread: Spread | None, pattern: str = "{:,.0f}", unit: str = "", sep: str = " ") -> str:
    """``median (min-max)``, with ``*`` when noisy; the bare value for one repetition. ``sep``
    goes between the median and the range (a newline in a console table)."""
    if spread is None:
        return "-"
    text = pattern.format(spread.median) + unit
    if spread.n > 1:
        text += f"{sep}({pattern.format(spread.low)}-{pattern.format(spread.high)})" + ("*" if spread.noisy else "")
    return text


def summary_cells(row: dict[str, Any], broker: str, rate_unit: str = "", sep: str = " ") -> list[str]:
    """One summary row as text, in SUMMARY_HEADER's order (console table and report alike)."""
    spread = row.get("spread") or {}

    def cell(key: str, pattern: str, unit: str = "") -> str:
        if key in spread:
            return fmt_spread(spread[key], pattern, unit, sep)
        return fmt(row.get(key), pattern + unit)

    return [row["profile"], broker, row.get("durability", "-"), cell("max_jobs_per_s", "{:,.0f}"),
            cell("jobs_per_cpu_s", "{:,.0f}"), cell("rate", "{:,.0f}", rate_unit), cell("p50_ms", "{:.1f}"),
            cell("p99_ms", "{:.1f}"), cell("p999_ms", "{:.1f}"), cell("publish_p99_ms", "{:.2f}"),
            fmt(row.get("lost")), fmt(row.get("duplicated")), fmt(row.get("in_doubt"))]


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
