"""The fault scenarios with the real clients: a worker kill and a broker kill, each contender on
private brokers, counted as our adapters' runs are (lost 0 at a promise that says so).

A contender's worker is the harness's consumer process plus its Node child; killing the first
kills the second (PR_SET_PDEATHSIG), so the official BullMQ's lock must expire and its own
stalled check put the jobs back, and RabbitMQ requeues amqplib's unacked deliveries when the
connection closes. A broker kill needs the clients to come back: ioredis reconnects by itself,
amqplib does not (the role has the reconnection an application writes)."""

from __future__ import annotations

import pytest

from benchmarks.faults import broker_crash, worker_crash
from benchmarks.faults.common import Session
from benchmarks.results import files as results
from brokers import clients, registry

from .conftest import NODE_CLIENTS


@pytest.fixture
def session(private_brokers, tmp_path, node_ready):
    return Session(private_brokers, small=True, out=tmp_path, ours=False, clients=NODE_CLIENTS)


def _ran_with(row, name: str) -> dict:
    loaded = results.load(row.results_file)
    assert loaded["environment"]["client"]["name"] == name, loaded["environment"]["client"]
    assert loaded["fault"]["met"] == row.met
    return loaded


def test_a_killed_contender_worker_loses_nothing_and_its_jobs_come_back_by_its_servers_rule(session):
    rows = worker_crash.run_scenario(session)
    assert {(r.broker, r.client) for r in rows} == {(clients.get(n).server, n) for n in session.clients}
    for row in rows:
        loaded = _ran_with(row, row.client)
        assert row.lost == 0 and row.recovery_s is not None, row
        assert row.met, row
        assert any(e["what"].startswith("SIGKILL consumer") for e in loaded["events"]), loaded["events"]
        assert loaded["figures"]["redelivered"] > 0, row
    lock = next(r for r in rows if registry.get(r.broker).capabilities.crash_redelivery.trigger == "lock-expiry")
    lock_s = registry.get(lock.broker).recovery_settings[-1].options["lock_duration_ms"] / 1000
    assert lock.recovery_s >= lock_s - 0.1, f"BullMQ put the jobs back before their lock expired: {lock}"


@pytest.mark.parametrize("name", ["bullmq-node", "amqplib-node"])
def test_a_broker_kill_under_a_contender_at_a_no_loss_promise_loses_nothing_and_both_roles_come_back(session, name):
    server = clients.get(name).server
    profile = next(p for p in registry.get(server).durability if p.no_loss and p.level == "disk")
    assert broker_crash.honours(name, profile)
    row = broker_crash.run_case(session, server, profile.name, client=name)
    loaded = _ran_with(row, name)
    f = loaded["figures"]
    assert row.lost == 0 and row.met, row
    assert loaded["errors"] == [], loaded["errors"]
    assert any(e["what"].startswith("SIGKILL broker") for e in loaded["events"]), loaded["events"]
    # Both roles outlived the crash: jobs were accepted and completed after it.
    crash = next(e["t_s"] for e in loaded["events"] if e["what"].startswith("SIGKILL broker"))
    after = [done for t, done in zip(f["timeline"]["t_s"], f["timeline"]["done_per_s"], strict=False) if t > crash + 1]
    assert sum(after) > 0, "nothing completed after the restart: the contender did not reconnect"
    assert f["completed"] + f["in_doubt"] >= f["accepted"], f


def test_a_contender_runs_only_the_profiles_whose_options_it_takes():
    amqplib = next(p for p in registry.get("rabbitmq").durability if p.options.get("queue_type") == "quorum")
    assert broker_crash.honours("amqplib-node", amqplib)
    made_up = registry.DurabilityProfile("x", "a made-up option", True, options={"fsync_each": True})
    assert not broker_crash.honours("amqplib-node", made_up)
    assert not broker_crash.honours("bullmq-node", made_up)
