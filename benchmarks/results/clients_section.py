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

from . import plots
from .blocks import Block
from .cpu_cost import of as cost_of
from .summary import SUMMARY_HEADER, contender, summary_cells, summary_rows

INTRO = ("Our clients and the real ones on the same server and promise, measured in one run (cells "
         "interleaved). \"ours\" is brokerbench's own adapter (Python); a named client is the library the "
         "seed's service would use, run through the role protocol (benchmarks/contenders/protocol.py), with the "
         "same workload, pacing and counting. Its client CPU includes the harness's bridge process to it.")


def _client_cpu_per_1000(runs: list[dict[str, Any]]) -> str:
    costs = [c.per_1000.get("clients") for r in runs if r["scenario"]["mode"] == "closed" and (c := cost_of(r))]
    costs = [v for v in costs if v is not None]
    return f"{statistics.median(costs):.3f} (n {len(costs)})" if costs else "-"


def blocks(ours: list[dict[str, Any]], contenders: list[dict[str, Any]]) -> list[Block]:
    """The section, or nothing when no contender ran. ``ours`` rows are kept only where a
    contender ran the same job type, loop, server and promise."""
    if not contenders:
        return []
    cells = {(r["scenario"]["profile"], r["scenario"]["broker"], r["scenario"]["mode"],
              r["scenario"].get("durability", "")) for r in contenders}
    matched = [r for r in ours if (r["scenario"]["profile"], r["scenario"]["broker"], r["scenario"]["mode"],
                                   r["scenario"].get("durability", "")) in cells and not contender(r["scenario"])]
    runs = matched + contenders
    rows = []
    for row in summary_rows(runs):
        mine = [r for r in runs if r["scenario"]["profile"] == row["profile"]
                and r["scenario"]["broker"] == row["broker"] and contender(r["scenario"]) == row.get("client", "")]
        name = row.get("client") or "ours"
        cells_ = summary_cells(row, f"{plots.label(row['broker'])}: {name}")
        rows.append([*cells_, _client_cpu_per_1000(mine)])
    return [Block("heading", "Our clients and the real ones, side by side"), Block("text", INTRO),
            Block("table", header=[*SUMMARY_HEADER, "client CPU-s / 1k jobs"], rows=rows)]
