"""Small-N fault scenarios on private brokers (started once for the session): the invariants."""

from __future__ import annotations

import pytest

from benchmarks import results
from benchmarks.faults import broker_crash, dropped_connections, poison, worker_crash
from benchmarks.faults.common import PrivateBrokers, Session


@pytest.fixture(scope="session")
def private_brokers():
    brokers = PrivateBrokers()
    yield brokers
    brokers.close()


@pytest.fixture
def session(private_brokers, tmp_path):
    return Session(private_brokers, small=True, out=tmp_path)


def _check_files(rows):
    for row in rows:
        loaded = results.load(row.results_file)
        assert loaded["fault"]["expectation"] == row.expectation and loaded["fault"]["met"] == row.met


def test_worker_crash_loses_nothing_and_redelivers(session):
    rows = worker_crash.run_scenario(session)
    assert {r.broker for r in rows} == {"redis", "rabbitmq"}
    for row in rows:
        assert row.lost == 0, row
        assert row.recovery_s is not None, f"the killed worker's jobs were redelivered: {row}"
        assert row.met, row
    redis = next(r for r in rows if r.broker == "redis")
    rabbit = next(r for r in rows if r.broker == "rabbitmq")
    assert rabbit.recovery_s < redis.recovery_s, "RabbitMQ redelivers at once, Redis after the lock expires"
    assert redis.recovery_s >= 0.9, "not before the 1 s lock expired"
    _check_files(rows)


@pytest.mark.parametrize("broker,profile", [("redis", "AOF always"), ("redis", "no persistence"),
                                            ("rabbitmq", "persistent + confirms"), ("rabbitmq", "quorum + confirms")])
def test_broker_crash_keeps_what_the_profile_promises(session, broker, profile):
    row = broker_crash.run_case(session, broker, profile)
    assert row.met, row
    if profile in broker_crash.NO_LOSS:
        assert row.lost == 0, row
    else:  # a backlog of thousands sat in memory when Redis died: the harness must see it lost
        assert row.lost > 0, row
    _check_files([row])


def test_dropped_connections_are_survived(session):
    rows = dropped_connections.run_scenario(session)
    for row in rows:
        assert row.lost == 0 and row.met, row
        assert "3 drops" in row.note
    _check_files(rows)


def test_poison_jobs_end_failed_with_reasons_and_workers_go_on(session):
    rows = poison.run_scenario(session)
    for row in rows:
        assert row.lost == 0 and row.met, row
        loaded = results.load(row.results_file)
        assert loaded["fault"]["failed"] == loaded["fault"]["bad_jobs"] > 0
        assert loaded["status"] == "ok"
    _check_files(rows)
