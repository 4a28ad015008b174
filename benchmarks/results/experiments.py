"""The report's section on experiments that explain a result (``benchmarks/experiments``)."""

from __future__ import annotations

from typing import Any

from . import sources
from .blocks import Block

ACKS = "brokerbench.experiment.acks/1"


def acks_blocks(d: dict[str, Any]) -> list[Block]:
    """Acks before a crash: how many acknowledged messages each queue type delivers again."""
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    failed = [t for t in d["trials"] if "error" in t]
    for t in d["trials"]:
        if "error" in t:
            continue
        cells.setdefault((t["queue_type"], t["wait_s"]), []).append(t)
    rows = []
    for (queue_type, wait_s), trials in sorted(cells.items()):
        back = [t["back_after_restart"] for t in trials]
        reported = [t.get("count_after_restart") for t in trials]
        rows.append([queue_type, f"{wait_s:g}", f"{trials[0]['acked']:,}", ", ".join(f"{b:,}" for b in back),
                     ", ".join("-" if r is None else f"{r:,}" for r in reported)])
    ok = [t for t in d["trials"] if "error" not in t]
    classic_now = [t["back_after_restart"] for t in ok if t["queue_type"] == "classic" and t["wait_s"] == 0]
    quorum_any = max((t["back_after_restart"] for t in ok if t["queue_type"] == "quorum"), default=None)
    classic_later = max((t["back_after_restart"] for t in ok
                         if t["queue_type"] == "classic" and t["wait_s"] > 0), default=None)
    first_wait = min((w for w in d["settings"]["waits_s"] if w > 0), default=0)
    now = ", ".join(f"{n:,}" for n in classic_now)
    takeaway = (f"A classic queue killed at once after its last ack delivered {now} "
                f"acknowledged messages again (of {d['settings']['messages']:,}); killed {first_wait:g} s or "
                f"more later, at most {classic_later}. A quorum queue delivered at most {quorum_any} again, whatever "
                "the wait (its count right after a restart can be briefly wrong while it replays its log; what it "
                "delivers is what counts). So a classic queue's acks reach the disk a moment after they are "
                "taken, and the broker-crash duplicates on classic queues are jobs acked in that moment. That the "
                "scenario saw thousands at about 1,000 jobs/s suggests the moment is longer under load than in "
                "this idle test; that part is not measured here.")
    if failed:
        takeaway += f" {len(failed)} trial(s) failed after the restart: " + "; ".join(
            f"{t['queue_type']}, wait {t['wait_s']:g} s: {t['error']}" for t in failed) + "."
    return [Block("heading", "Why classic queues run jobs twice after a crash: acks before a kill (experiment)"),
            Block("text", "A private RabbitMQ node: persistent messages published with confirms, all consumed and "
                          "acked (the queue reports 0 ready), then the node SIGKILLed after a wait and restarted. "
                          "Each message delivered again was acknowledged before the kill."
                          + (f" Results file: {sources.of(d)}." if sources.of(d) else "")),
            Block("table", header=["queue type", "wait before the kill, s", "acked", "delivered again (per trial)",
                                   "count the queue reported first"], rows=rows),
            Block("text", takeaway)]
