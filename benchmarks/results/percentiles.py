"""How every view shows a latency percentile: as a number only when its sample count allows it
(the one rule, :func:`benchmarks.harness.metrics.min_samples`: p50 needs 20 samples, p99 1,000,
p99.9 10,000), with that count beside it, to the precision the HDR histograms keep (three
significant digits), never to a fixed 0.1 ms.

Tables, plots, takeaways, claims, ``compare``, the console and the live view all go through
these helpers, so a percentile with too few samples is never printed as a number anywhere: a
table says "n too small" (or the max, labelled "max"), a sentence says how many samples there
were and how many the percentile needs.
"""

from __future__ import annotations

import math
from typing import Any

from ..harness.metrics import DIGITS, PERCENTILES, count_of, min_samples, printable


def q_of(name: str) -> float:
    """The percentile (0-100) a figure's name stands for: "p99" -> 99, "p99_9" or "p99.9" -> 99.9."""
    if name in PERCENTILES:
        return PERCENTILES[name]
    return float(name.removeprefix("p").replace("_", "."))


def label(name: str) -> str:
    """How a percentile is named in text: "p99_9" -> "p99.9"."""
    return name.replace("_", ".")


def sig(value: float, digits: int = DIGITS) -> str:
    """``value`` to ``digits`` significant digits (HDR's precision) without an exponent and
    without rounding its integer part: 0.0123, 2.93, 18.9, 1,235."""
    if not value or not math.isfinite(value):
        return f"{value:g}"
    rounded = float(f"{value:.{digits}g}")
    whole = math.floor(math.log10(abs(rounded))) + 1  # digits before the decimal point
    return f"{value:,.{max(0, digits - whole)}f}"


def n_text(n: int | None) -> str:
    """A sample count as printed beside a percentile."""
    return "n unknown" if n is None else f"n={n:,}"


def words(name: str, value: float | None, n: int | None, most: float | None = None, unit: str = " ms",
          with_n: bool = True) -> str:
    """A percentile in a sentence, with its count: "p99 2.93 ms (n=12,340)" (without the count
    when ``with_n`` is False: the sentence gives it once for several percentiles). Under the
    rule its value is never given: "p99.9: too few samples (n=735 of the 10,000 it needs; max
    45.2 ms)"; with ``n`` unknown: "p99: n unknown, not shown"."""
    q = q_of(name)
    if n is None:
        return f"{label(name)}: n unknown, not shown"
    if printable(q, n) and value is not None:
        return f"{label(name)} {sig(value)}{unit}" + (f" ({n_text(n)})" if with_n else "")
    slowest = "" if most is None else f"; max {sig(most)}{unit}"
    have = f"{n_text(n)} of the " if with_n else "it needs "
    return f"{label(name)}: too few samples ({have}{min_samples(q):,}{' it needs' if with_n else ''}{slowest})"


def of_summary(summary: dict[str, Any] | None, name: str, encoded: str | None = None, unit: str = " ms") -> str:
    """:func:`words` for percentile ``name`` of a :func:`~benchmarks.harness.metrics.summary`
    (``encoded``: its histogram, for the count of a summary that lacks one)."""
    summary = summary or {}
    return words(name, summary.get(name), count_of(summary, encoded), summary.get("max"), unit)


def cell(name: str, value: float | None, n: int | None, most: float | None = None) -> str:
    """A percentile in a table cell whose row shows ``n`` in a column of its own: the value
    when the rule allows it, else "n too small" (or "max X (n too small)" when ``most``, the
    max, is given), "n unknown" when the count is not known."""
    if n is None:
        return "n unknown"
    if printable(q_of(name), n) and value is not None:
        return sig(value)
    return "n too small" if most is None else f"max {sig(most)} (n too small)"


def allowed(summary: dict[str, Any] | None, name: str, encoded: str | None = None) -> float | None:
    """The value of percentile ``name`` of a summary when the rule allows printing it, else None."""
    summary = summary or {}
    value = summary.get(name)
    return value if value is not None and printable(q_of(name), count_of(summary, encoded)) else None
