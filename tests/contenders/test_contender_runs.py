"""``brokerbench run --client``: the real clients through the harness's workloads, beside ours.

Each contender runs a short closed and open loop at a durable promise, on a shared broker and on
a private one, interleaved with our adapter on the same server; every job is counted (accepted,
completed, lost 0, duplicated 0, in doubt 0), the results files say which client ran (with its
library versions), and the report shows the contenders in a section of their own, never in the
brokers' headline, with the files' own figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.commands import run as run_command
from benchmarks.results import report
from benchmarks.results.summary import contender, summary_rows
from brokers import clients

from .conftest import NODE_CLIENTS as NODE

SHORT = ["--profile", "mix", "--duration-s", "1", "--warmup-s", "0.5", "--repeat", "1", "--quiet",
         "--rate", "100"]


def _files(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "summary.json"]


def _check_counted(result: dict) -> None:
    f = result["figures"]
    assert result["status"] == "ok", result["errors"]
    assert f["sent"] > 0 and f["accepted"] == f["sent"], f
    assert (f["lost"], f["duplicated"], f["in_doubt"]) == (0, 0, 0), result["scenario"]
    assert f["completed"] == f["accepted"], f


def test_both_contenders_run_beside_ours_at_disk_and_the_report_keeps_them_apart(node_ready, tmp_path):
    """At "disk": Redis is a private instance (the shared one keeps nothing on disk), RabbitMQ
    the shared one (persistent messages with confirms)."""
    names = [c.name for c in clients.contenders()]
    argv = [a for name in names + ["redis", "rabbitmq"] for a in ("--client", name)]
    run_command.main([*argv, *SHORT, "--mode", "closed", "--out", str(tmp_path)])
    run_command.main([*argv, *SHORT, "--mode", "open", "--out", str(tmp_path), "--no-report"])
    results = _files(tmp_path)
    ran = {(r["scenario"]["broker"], contender(r["scenario"]), r["scenario"]["mode"]) for r in results}
    for name in names:
        server = clients.get(name).server
        assert {(server, name, "closed"), (server, name, "open")} <= ran
    for result in results:
        _check_counted(result)
        said = result["environment"]["client"]
        name = contender(result["scenario"]) or result["scenario"]["broker"]
        assert said["name"] == name and said["libraries"], said
        assert said["official"] == (name in names)
        if said["official"]:
            assert said["runtime"].startswith(("node ", "python ")), said
    for result in results:  # Redis: a private instance; RabbitMQ: the shared broker
        how = result["durability"]["how"]
        assert ("private instance" in how) == (result["scenario"]["broker"] == "redis"), how
    path = report.build([tmp_path], tmp_path / "again", allow_mixed=True)
    text = path.read_text()
    head, _, side = text.partition("## Our clients and the real ones, side by side")
    assert side, "the report has no section for the contenders"
    for name in names:
        assert name not in head, f"{name} appears among the brokers' sections"
    for row in summary_rows([r for r in results if r["scenario"]["mode"] == "closed"]):
        who = row.get("client") or "ours"
        line = next(line for line in side.splitlines() if f": {who} |" in line and f"| {row['profile']} |" in line
                    and ("Redis" in line) == (row["broker"] == "redis"))
        assert f"| {row['max_jobs_per_s']:,.0f} |" in line, (line, row["max_jobs_per_s"])


def test_each_contender_runs_on_a_private_broker_and_on_a_shared_one(node_ready, private_brokers, tmp_path):
    """BullMQ on the shared Redis (from memory: what it keeps); amqplib on a private RabbitMQ
    node (given by --url), on disk."""
    run_command.main(["--client", "bullmq-node", *SHORT, "--mode", "closed", "--durability", "memory",
                      "--out", str(tmp_path / "shared"), "--no-report"])
    node = private_brokers.default_instance("rabbitmq")
    run_command.main(["--client", "amqplib-node", *SHORT, "--mode", "closed", "--url", node.url,
                      "--out", str(tmp_path / "private"), "--no-report"])
    shared, private = _files(tmp_path / "shared"), _files(tmp_path / "private")
    assert [contender(r["scenario"]) for r in shared] == ["bullmq-node"]
    assert [contender(r["scenario"]) for r in private] == ["amqplib-node"]
    for result in shared + private:
        _check_counted(result)
    assert private[0]["durability"]["level"] == "disk"


def test_a_client_that_cannot_run_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SystemExit, match="brokerbench clients install"):
        run_command.main(["--client", "bullmq-node", *SHORT, "--mode", "closed"])
    with pytest.raises(SystemExit, match="unknown client 'bullmq-go'"):
        run_command.main(["--client", "bullmq-go", *SHORT])


def test_a_client_refuses_a_run_option_it_cannot_honour_by_name():
    with pytest.raises(ValueError, match="wait_replicas"):
        clients.get("bullmq-node").options_for_role({"wait_replicas": 1, "reconnect_for_s": 10.0})
    assert clients.get("amqplib-node").options_for_role(
        {"persistent": True, "confirms": "windowed", "queue_type": "quorum"}) == {"persistent": True,
                                                                               "confirms": "windowed"}


def test_the_reference_contender_workloads_give_the_noop_table_from_the_files(node_ready, tmp_path):
    """The reference's contender part, small: the mix (labelled: our runs of it stay out of the
    headline), a drain whose queue was filled one add per call, and no-op jobs end to end at
    1,000/s; the report's no-op table quotes each client's drain and fill rates from its files."""
    from rich.console import Console

    from benchmarks.commands.run import run_workloads
    from benchmarks.harness.suite import contender_workloads
    from benchmarks.results import plots
    from benchmarks.results.clients_section import noop_blocks

    workloads = [w.with_(drain_timeout_s=30.0) for w in contender_workloads(scale=0.05)]
    names = [*NODE, "redis", "rabbitmq"]
    run_workloads(workloads, ["redis", "rabbitmq"], "memory", 1, tmp_path, Console(quiet=True), quiet=True,
                  client_names=names)
    results = _files(tmp_path)
    for result in results:
        _check_counted(result)
    drains = {(plots.label(r["scenario"]["broker"]), contender(r["scenario"]) or "ours"): r for r in results
              if r["scenario"]["label"].startswith("drain")}
    assert len(drains) == len(names) and all(r["scenario"]["publish_batch"] == 1 for r in drains.values())
    collected = report.collect([tmp_path])
    assert not collected.runs, "no run of the contender part enters the brokers' headline"
    table = next(b for b in noop_blocks(collected.labelled + collected.contenders) if b.kind == "table")
    latencies = {(plots.label(r["scenario"]["broker"]), contender(r["scenario"]) or "ours"): r for r in results
                 if r["scenario"]["label"].startswith("latency")}
    for row in table.rows:
        drained = drains[(row[0], row[2])]["drain"]
        # ‡: our AMQP producer's calls (windowed confirms) return before their confirms
        ahead = " ‡" if row[2] == "ours" and row[0] == plots.label("rabbitmq") else ""
        assert row[3] == f"{drained['jobs_per_s']:,.0f}" and row[4] == f"{drained['fill_jobs_per_s']:,.0f}" + ahead, row
        assert row[8:11] == ["0", "0", "0"] and row[11] == "1 + 1", row
        # Each role's CPU per 1,000 jobs, from its own run's file: the worker's in the drain, the
        # producer's at the rate.
        worker = drains[(row[0], row[2])]["figures"]["cpu_per_1000_jobs"]["consumers"]
        producer = latencies[(row[0], row[2])]["figures"]["cpu_per_1000_jobs"]["producers"]
        assert row[12:14] == [f"{worker:.3f}", f"{producer:.3f}"], row
    assert len(table.rows) == len(names)
    for result in latencies.values():   # a contender's program is its client; the harness's bridge apart
        cpu = result["figures"]["cpu_s"]
        assert cpu["producers"] > 0 and cpu["consumers"] > 0, cpu
        assert cpu["clients"] == round(cpu["producers"] + cpu["consumers"], 3), cpu
        assert ("bridge" in cpu) == bool(contender(result["scenario"])), cpu
