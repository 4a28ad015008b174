"""The report's sections on our adapters against the reference clients (the official BullMQ
package, plain pika): the drain, latency and enqueue benchmarks' results files, as tables.

These rank our adapters, not the brokers: a verdict about BullMQ or RabbitMQ must not rest on
them alone (our Redis worker batches; the official package does not)."""

from __future__ import annotations

import statistics
from typing import Any

from . import sources
from .blocks import Block
from .summary import fmt

HEADING = "Our adapters against the reference clients ({} benchmark)"
CAVEAT = ("These figures rank our adapters against the reference clients on the same broker; they say "
          "nothing about Redis against RabbitMQ.")


def _from(d: dict[str, Any]) -> str:
    return f" Results file: {sources.of(d)}." if sources.of(d) else ""


def _spread(figure: dict[str, Any], form: str = "{:.2f}") -> str:
    return f"{form.format(figure['median'])} ({form.format(figure['min'])}-{form.format(figure['max'])})"


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


def latency_blocks(d: dict[str, Any]) -> list[Block]:
    s, settings = d["summary"], d["settings"]
    behind = s.get("fell_behind", {})
    rows = [[name, _spread(e2e["p50"]), _spread(e2e["p99"]), _spread(s["publish_ms"][name]["p99"]),
             _kept(behind.get(name))]
            for name, e2e in s["end_to_end_ms"].items()]
    ratios = "; ".join(f"{label}: p50 x{statistics.median(r['p50']):.3g}, p99 x{statistics.median(r['p99']):.3g}"
                       for label, r in s["ratios"].items())
    fell = ("" if not behind else
            f" {' and '.join(behind)} could not keep {settings['rate']:,.0f} jobs/s here (producer or worker): "
            "their figures are their own backlog (each job's clock starts at its intended send time), so the "
            "ratios against them say only that they fell behind.")
    return [Block("heading", HEADING.format("latency")),
            Block("text", f"One producer at {settings['rate']:,.0f} jobs/s for {settings['seconds']:g} s, one worker "
                          f"(Redis concurrency / AMQP prefetch {settings['width']}), no-op jobs of "
                          f"{settings['payload_bytes']} B; median (min-max) of {settings['rounds']} alternating "
                          f"rounds. {settings['durability']}. " + CAVEAT + _from(d)),
            Block("table", header=["contender", "end to end p50 ms", "end to end p99 ms", "publish call p99 ms",
                                   "producer kept the rate"], rows=rows),
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
