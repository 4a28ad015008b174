"""The report's fault sections: the scenarios' table, the fault timelines, recovery against lock
duration, memory under backpressure, delay lateness, the acks experiment, replication and
failover. Each plot and table is followed by its takeaway (:mod:`.takeaways`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from brokers import registry

from . import experiments, plots, scenario_plots, sources, takeaways
from .blocks import Block, Section
from .summary import fmt

OUTCOME_WORDS = ("Every job a producer sent is accepted (it got its reply or confirm), refused (the broker "
                 "certainly does not hold it) or in doubt (it may: a timeout after sending, a WAIT short of its "
                 "replicas, a connection lost before the reply). Lost: accepted and never run. Duplicated: run more "
                 "than once. In doubt: counted apart, with how many of them ran (the notes say); a refused job that "
                 "ran would fail its row.")


def blocks(collected: Any, plot_dir: Path) -> list[Block]:
    """Everything the fault scenarios' results files show (``collected``: a report.Collected)."""
    out = Section(plot_dir)
    replication_rows = [r for r in collected.rows if r["scenario"].startswith("replication")]
    general_rows = [r for r in collected.rows if not r["scenario"].startswith("replication")]
    if general_rows:
        out += [Block("heading", "Reliability: fault scenarios"),
                Block("text", OUTCOME_WORDS + " Each scenario ran on private brokers."),
                Block("table", header=["scenario", "broker", "profile", "lost", "dup", "in doubt", "recovery s",
                                       "expectation", "met", "note", "results file"],
                      rows=[[r["scenario"], plots.label(r["broker"]), r["profile"]
                             + (f" ({registry.level_label(r['level'])})" if r.get("level") else ""), fmt(r["lost"]),
                             fmt(r["duplicated"]), fmt(r.get("in_doubt")), fmt(r["recovery_s"], "{}"), r["expectation"],
                             "yes" if r["met"] else "NO", r["note"], sources.of(r) or "-"] for r in general_rows])]
        out.say(takeaways.reliability(general_rows))
    out.figure("recovery-vs-lock", scenario_plots.recovery_against_lock(collected.faults),
           "Worker crash: recovery time for each lock duration / stalled-check setting")
    out.say(takeaways.recovery(collected.faults))
    out.figure("memory-backpressure", scenario_plots.memory_under_backpressure(collected.faults),
           "Memory and backlog over time under backpressure")
    out.say(takeaways.memory(collected.faults))
    out.figure("delay-lateness", scenario_plots.delay_lateness(collected.faults), "Delayed jobs: lateness CDF")
    out.say(takeaways.delays(collected.faults))
    for result in collected.faults:
        if result["name"].startswith(("worker-crash", "broker-crash")) and result.get("events") and result["figures"]:
            profile = plots.setting_words(result)
            if result["name"].startswith("broker-crash") and profile not in TIMELINE_PROFILES:
                continue
            name = re.sub(r"[^A-Za-z0-9-]+", "", f"timeline-{result['name']}-{profile}".replace(" ", "-")
                          .replace("+", "and"))
            if (plot_dir / f"{name}.png").exists():
                continue
            out.figure(name, plots.timeline(result), f"Timeline of {result['name']} {profile}")
            out.say(timeline_takeaway(result) + f" Results file: {sources.of(result)}.")
    for d in collected.acks:
        out += experiments.acks_blocks(d)
    if replication_rows:
        out += replication_blocks(collected, replication_rows, plot_dir)
    return out


# Broker-crash timelines shown: the pair acknowledged on disk and the pair acknowledged from
# memory, one run each per broker.
TIMELINE_PROFILES = ("AOF always", "persistent + confirms", "no persistence", "transient messages")


def timeline_takeaway(result: dict[str, Any]) -> str:
    """One or two sentences under a fault timeline, from its own figures."""
    f, fault = result["figures"], result["fault"]
    who = f"{plots.label(result['scenario']['broker'])}, {plots.setting_words(result)}"
    if result["name"].startswith("worker-crash"):
        return (f"{who}: the killed consumer's jobs ran again {fault.get('recovery_first_s')}-"
                f"{fault.get('recovery_last_s')} s after the kill ({f.get('redelivered', 0)} redelivered runs, "
                f"black ticks along the top); lost {f.get('lost')}, duplicated {f.get('duplicated')}.")
    return (f"{who}: of {f.get('accepted', 0):,} jobs accepted, {f.get('lost', 0):,} were lost and "
            f"{f.get('duplicated', 0):,} ran twice; the gap in the backlog line is the time the broker "
            f"could not be read.")


def node_settings(faults: list[dict[str, Any]]) -> str:
    """What each node of the replicated brokers kept, from the results files (the settings every
    node ran and the level each keeps on its own), or that older files did not record it."""
    said: dict[str, dict[str, Any]] = {}
    for r in faults:
        d = r.get("durability") or {}
        if r["name"].startswith("replication-") and "node_level" in d and not r["name"].startswith("replication-cost"):
            said.setdefault(r["scenario"]["broker"], d)
    if not said:
        return ("These results do not record each node's settings (older files: the Redis nodes then ran "
                "without AOF).")
    parts = []
    for kind, d in sorted(said.items(), reverse=True):
        server = ", ".join(f"{k} {v}" for k, v in d.get("node_server", {}).items())
        parts.append(f"{plots.label(kind)}: every node {registry.level_label(d['node_level'])}"
                     + (f" ({server})" if server else ""))
    return "; ".join(parts) + ". The cost rows' one-node baselines keep the same, so they price the copies alone."


def replication_blocks(collected: Any, rows: list[dict[str, Any]], plot_dir: Path) -> list[Block]:
    """Replication and failover: the failover rows, the cost of copies, a failover timeline
    per broker (the first leader kill)."""
    failovers = [r for r in rows if r["scenario"] == "replication"]
    cost = [r for r in rows if r["scenario"] == "replication cost"]
    out = Section(plot_dir, [Block("heading", "Replication and failover: losing the node that holds the queue"),
           Block("text", "Redis: a primary with 2 replicas and 3 Sentinels (down after 1 s); RabbitMQ: a 3-node "
                         "cluster, every queue a quorum queue (3 replicas). " + node_settings(collected.faults)
                         + " Private brokers on one machine, closed-loop load. "
                         "Unavailable: the longest stretch in which no job was accepted (100 ms steps). "
                         "Failover: until Sentinel named a new primary, or rabbitmqctl a new queue leader (polled; "
                         "one rabbitmqctl call takes about 0.8 s, so RabbitMQ's figure is an upper bound). Every "
                         "node of a replicated broker shares this machine's cores with the others and the load: "
                         "the cost rows show what copies cost on one box, not on three.")])
    if failovers:
        out.append(Block("table", header=["broker", "setting: fault", "accepted means", "lost", "dup", "in doubt",
                                          "unavailable s", "failover s", "expectation", "met", "note", "results file"],
                         rows=[[plots.label(r["broker"]), r["profile"], registry.level_label(r.get("level", "")),
                                fmt(r["lost"]), fmt(r["duplicated"]),
                                fmt(r.get("in_doubt")), fmt(r.get("unavailable_s"), "{}")
                                + (" (never resumed)" if r.get("resumed") is False else ""),
                                fmt(r.get("failover_s"), "{}"), r["expectation"],
                                "yes" if r["met"] else "NO", r["note"], sources.of(r) or "-"] for r in failovers]))
        out.say(takeaways.failovers(failovers))
    if cost:
        out += [Block("heading", "The cost of replication", level=3),
                Block("table", header=["broker", "setting", "lost", "dup", "measured", "results file"],
                      rows=[[plots.label(r["broker"]), r["profile"], fmt(r["lost"]), fmt(r["duplicated"]), r["note"],
                             sources.of(r) or "-"] for r in cost])]
        out.figure("replication-cost", plots.replication_cost(collected.faults), "The cost of replication")
        out.say(takeaways.replication_cost(collected.faults))
    drawn: set[str] = set()
    for result in collected.faults:
        broker = result["scenario"]["broker"]
        if (result["name"].startswith("replication-leader") and broker not in drawn and result.get("figures")):
            drawn.add(broker)
            out.figure(f"failover-{broker}", plots.failover_timeline(result), f"A failover on {plots.label(broker)}")
            out.say(takeaways.failover_timeline(result) + f" Results file: {sources.of(result)}.")
    return out
