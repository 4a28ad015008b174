"""The live view with the real clients (``brokerbench live --client bullmq-node --client
amqplib-node``): each side's load is a contender's producer and workers, its private broker as
usual. Every job the lab counts accepted ran, a killed contender worker's jobs come back (none
lost), the broker's own count agrees (nothing left in the queue) and the page's label names the
client. A special job, which needs our adapter's workers, is refused with the reason."""

from __future__ import annotations

import pytest

from benchmarks.live.command import build_parser, side_clients
from benchmarks.live.lab import ActionFailed, Lab
from brokers import clients
from tests.helpers.waiting import wait_for

from ..live.test_live_private import held_by_broker


@pytest.fixture(scope="module")
def lab(node_ready):
    chosen = {clients.get(n).server: n for n in ("bullmq-node", "amqplib-node")}
    lab = Lab(list(chosen), clients=chosen).start()
    yield lab
    lab.close()


def snap(lab: Lab) -> dict[str, dict]:
    return {k: s.tally.snapshot() for k, s in lab.sides.items()}


def test_a_contender_runs_each_side_and_a_killed_worker_loses_nothing(lab):
    labels = {k: v["label"] for k, v in lab.snapshot()["sides"].items()}
    assert "BullMQ (Node)" in labels["redis"] and "amqplib (Node)" in labels["rabbitmq"], labels
    lab.act("start_load", {"rate": 100, "lock_s": 1})
    wait_for(lambda: min(s["ran"] for s in snap(lab).values()) > 50, 90, "contender runs on both sides")
    lab.act("kill_worker", {})   # one worker of each side: a Python process and its Node child
    wait_for(lambda: all(s["ran"] > 300 for s in snap(lab).values()), 60, "the load goes on after the kills")
    lab.act("stop_load", {})
    for kind, side in lab.sides.items():   # the broker's own count: nothing left behind
        wait_for(lambda side=side: held_by_broker(side) == 0, 30, f"{kind}: the queue drained")
    for kind, side in lab.sides.items():
        wait_for(lambda side=side: side.tally.snapshot()["waiting_to_run"] == 0, 30, f"{kind}: every accepted job ran")
        counts = side.tally.snapshot()
        assert counts["accepted"] > 300 and counts["lost"] == 0, (kind, counts)
        assert counts["in_doubt"] == counts["refused"] == 0, (kind, counts)
        assert counts["latency_n"] > 0 and counts["p50_ms"] is not None, (kind, counts)
    texts = [m["text"] for m in lab.snapshot()["markers"]]
    assert sum(t.startswith("kill -9 worker") for t in texts) == 2, texts


def test_a_special_job_on_a_contender_side_is_refused_with_the_reason(lab):
    with pytest.raises(ActionFailed, match="our adapter's workers"):
        lab.act("publish", {"what": "poison"})


def test_the_command_takes_one_installed_client_per_server_shown(node_ready):
    parser = build_parser()
    assert side_clients(["bullmq-node"], ["redis", "rabbitmq"], parser) == {"redis": "bullmq-node"}
    with pytest.raises(SystemExit):
        side_clients(["bullmq-node"], ["rabbitmq"], parser)
    with pytest.raises(SystemExit):
        side_clients(["no-such-client"], ["redis"], parser)
