"""The adapter constructor's options are part of the contract (brokers/contract.py,
``Broker.option_names``): every kind takes the options the harness gives every kind, and
``Driver.open`` refuses any other key by name, before it connects to anything."""

from __future__ import annotations

import pytest

from brokers import clients, registry


@pytest.mark.parametrize("kind", registry.kinds())
def test_an_unknown_option_is_refused_by_name_before_anything_connects(kind):
    with pytest.raises(ValueError, match=r"no option no_such_option; it takes .*queue"):
        registry.get(kind).open("x://nowhere.invalid:1", queue="q", no_such_option=1)


@pytest.mark.parametrize("kind", registry.kinds())
def test_every_kind_takes_the_options_the_harness_gives_every_kind(kind):
    names = registry.get(kind).adapter().option_names()
    assert names is not None, f"{kind}: its options are not named, so none could be refused"
    assert set(clients.HARNESS_OPTIONS) <= names, sorted(set(clients.HARNESS_OPTIONS) - names)


def test_a_worker_option_is_a_constructor_option_of_the_kinds_with_locks():
    redis = registry.get("redis").adapter().option_names()
    assert {"lock_duration_ms", "stalled_interval_ms", "max_stalled_count"} <= redis
    amqp = registry.get("rabbitmq").adapter().option_names()
    assert {"prefetch", "ack_batch", "persistent", "confirms", "queue_type"} <= amqp
