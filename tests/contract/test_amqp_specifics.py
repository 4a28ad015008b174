"""RabbitMQ-only behaviour of the AMQP adapter: topology repairs itself, confirm modes."""

from __future__ import annotations

import time

import pytest

from brokers.contract import JobOptions
from tests.helpers.recorder import Recorder


def test_a_deleted_delay_queue_does_not_lose_delayed_jobs(make_broker):
    broker = make_broker("rabbitmq")
    producer = broker.producer()
    producer.publish("user_variables_update", {"n": 1}, JobOptions(delay_ms=300))
    producer.flush()
    # Someone deletes the delay queue while the producer still thinks it exists:
    broker._admin_call(lambda ch: ch.queue_delete(broker.topology.delay_queue(300)))
    second = producer.publish("user_variables_update", {"n": 2}, JobOptions(delay_ms=300))
    producer.flush()  # the unroutable copy came back; it is sent again after a re-declare
    producer.close()
    rec = Recorder()
    broker.worker(rec.handler()).run(idle_timeout=2.0, timeout=20)
    assert second in rec.ids(), "the job published while its delay queue was gone still ran"


@pytest.mark.parametrize("confirms", ["off", "each", "windowed"])
def test_every_confirm_mode_delivers_and_reports_acceptance(make_broker, confirms):
    broker = make_broker("rabbitmq")
    accepted: list[str] = []
    producer = broker.producer(confirms=confirms, window=8)
    producer.on_accepted = accepted.extend
    ids = [producer.publish("user_variables_update", {"n": i}) for i in range(40)]
    producer.flush()
    producer.close()
    assert sorted(accepted) == sorted(ids)
    deadline = time.monotonic() + 5
    while broker.stats().waiting < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.stats().waiting == 40
