"""The report's sections on our adapters against the reference clients (the official BullMQ
package, plain pika): the drain, latency and enqueue benchmarks' results files, as tables.

These rank our adapters, not the brokers: a verdict about BullMQ or RabbitMQ must not rest on
them alone (our Redis worker batches; the official package does not)."""

from __future__ import annotations

import statistics
from typing import Any

from ..harness.metrics import count_of, printable
from . import sources
from .blocks import Block
from .percentiles import cell, q_of, sig
from .summary import fmt

HEADING = "Our adapters against the reference clients ({} benchmark)"
CAVEAT = ("These figures rank our adapters against the reference clients on the same broker; they say "
          "nothing about Redis against RabbitMQ.")


def _from(d: dict[str, Any]) -> str:
    return f" Results file: {sources.of(d)}." if sources.of(d) else ""


def _spread(figure: dict[str, Any], form: Any = "{:.2f}") -> str:
    """median (min-max); ``form``: a format string or a function from a value to its text."""
    text = form.format if isinstance(form, str) else form
    return f"{text(figure['median'])} ({text(figure['min'])}-{text(figure['max'])})"


def _ratios(ratios: dict[str, list[float]]) -> str:
    return "; ".join(f"{label}: x{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})" for label, r in ratios.items())


def drain_blocks(d: dict[str, Any]) -> list[Block]:
    s, settings = d["summary"], d["settings"]
    return [Block("heading", HEADING.format("drain")),
            Block("text", f"{settings['jobs']:,} no-op jobs of {settings['payload_bytes']} B, one worker process, "
                          f"median of {settings['rounds']} rounds; Redis workers at concurrency "
                          f"{settings['concurrency']}, AMQP consumers at prefetch {settings['prefetch']}. " + CAVEAT
                          + _from(d)),
            Block("table", header=["contender", "jobs/s", "jobs per CPU-second"],
                  rows=[[name, fmt(rate), fmt(s["median_jobs_per_cpu_s"][name])]
                        for name, rate in s["median_jobs_per_s"].items()]),
            Block("text", "; ".join(f"{label}: {r['of_medians']:.2f}x" for label, r in s["ratios"].items()))]


def _kept(behind: dict[str, float] | None) -> str:
    if behind is None:
        return "yes"
    return (f"no: sent {behind['sent_per_s']:,.0f}/s at worst, last job done "
            f"{behind['worker_finished_late_s']:.1f} s after it was due")


def _fewest(d: dict[str, Any], name: str, figure: str) -> int | None:
    """The samples of the round with the fewest, for one contender's figure (None: unknown)."""
    counts = [count_of((r.get(name) or {}).get(figure)) for r in d.get("rounds") or []]
    return None if not counts or None in counts else min(counts)  # type: ignore[type-var]


def _percentile(d: dict[str, Any], name: str, figure: str, percentile: str) -> str:
    """median (min-max) of the rounds, when every round has the samples the percentile needs."""
    n = _fewest(d, name, figure)
    spread = d["summary"][figure][name][percentile]
    return _spread(spread, sig) if printable(q_of(percentile), n) else cell(percentile, None, n)


def _counts(d: dict[str, Any], name: str, figure: str) -> str:
    counts = [count_of((r.get(name) or {}).get(figure)) for r in d.get("rounds") or []]
    if not counts or None in counts:
        return "n unknown"
    low, high = min(counts), max(counts)  # type: ignore[type-var]
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def latency_blocks(d: dict[str, Any]) -> list[Block]:
    """The latency benchmark: each contender's percentiles (median (min-max) of the rounds, under
    the samples rule, beside each round's count) and the ratios a percentile allows."""
    s, settings = d["summary"], d["settings"]
    behind = s.get("fell_behind", {})
    rows = [[name, _percentile(d, name, "end_to_end_ms", "p50"), _percentile(d, name, "end_to_end_ms", "p99"),
             _counts(d, name, "end_to_end_ms"), _percentile(d, name, "publish_ms", "p99"),
             _counts(d, name, "publish_ms"), _kept(behind.get(name))]
            for name in s["end_to_end_ms"]]
    parts = []
    for label, r in s["ratios"].items():  # a ratio only of percentiles both contenders have the samples for
        shown = [f"{p} x{statistics.median(r[p]):.3g}" for p in ("p50", "p99")
                 if all(printable(q_of(p), _fewest(d, name, "end_to_end_ms")) for name in label.split(" / "))]
        if shown:
            parts.append(f"{label}: " + ", ".join(shown))
    ratios = "; ".join(parts) or "none (too few samples)"
    fell = ("" if not behind else
            f" {' and '.join(behind)} could not keep {settings['rate']:,.0f} jobs/s here (producer or worker): "
            "their figures are their own backlog (each job's clock starts at its intended send time), so the "
            "ratios against them say only that they fell behind.")
    return [Block("heading", HEADING.format("latency")),
            Block("text", f"One producer at {settings['rate']:,.0f} jobs/s for {settings['seconds']:g} s, one worker "
                          f"(Redis concurrency / AMQP prefetch {settings['width']}), no-op jobs of "
                          f"{settings['payload_bytes']} B; median (min-max) of {settings['rounds']} alternating "
                          f"rounds. {settings['durability']}. " + CAVEAT + _from(d)),
            Block("table", header=["contender", "end to end p50 ms", "end to end p99 ms", "end to end n per round",
                                   "publish call p99 ms", "publish n per round", "producer kept the rate"], rows=rows),
            Block("text", "Ratios (ours / reference, per round, median): " + ratios + "." + fell)]


def enqueue_blocks(d: dict[str, Any]) -> list[Block]:
    s, settings = d["summary"], d["settings"]
    return [Block("heading", HEADING.format("enqueue")),
            Block("text", f"One producer adds {settings['jobs']:,} jobs of {settings['payload_bytes']} B per contender "
                          f"and round (after {settings['warmup_jobs']} untimed), nothing consuming; batch contenders "
                          f"send {settings['batch']:,} per call; median (min-max) of {settings['rounds']} alternating "
                          f"rounds. {settings['durability']}. " + CAVEAT + _from(d)),
            Block("table", header=["contender", "jobs/s"],
                  rows=[[name, _spread(f, "{:,.0f}")] for name, f in s["jobs_per_s"].items()]),
            Block("text", "Ratios (per round, median (min-max)): " + _ratios(s["ratios"]) + ".")]


def blocks(drains: list[dict[str, Any]], latencies: list[dict[str, Any]],
           enqueues: list[dict[str, Any]]) -> list[Block]:
    out: list[Block] = []
    for d in drains:
        out += drain_blocks(d)
    for d in latencies:
        out += latency_blocks(d)
    for d in enqueues:
        out += enqueue_blocks(d)
    return out
