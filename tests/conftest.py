"""Shared fixtures: the brokers to test against, and a fresh queue per test.

Broker kinds come from the registry (:mod:`brokers.registry`): every registered adapter runs the
contract suite; tests that need a broker in a process of its own (crashes, dropped connections,
credentials) run on the kinds that are not in-process. Brokers are found by brokers.provision
(environment URLs, localhost, local binaries, Docker). A test that needs a broker fails, never
skips, when none can be found: CI always has both.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Iterator

import pytest

from brokers import registry
from brokers.contract import Broker
from brokers.provision import Endpoint, find

KINDS = registry.kinds()
NETWORK_KINDS = registry.kinds(in_process=False)

logging.getLogger("pika").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def endpoints() -> dict[str, Endpoint]:
    return {kind: find(kind) for kind in NETWORK_KINDS}


@pytest.fixture(scope="session")
def private_brokers() -> Iterator[Any]:
    """Private broker instances (own ports and folders) that tests may kill or reconfigure,
    started on first use and stopped at the end of the session: never the shared ones."""
    from benchmarks.faults.common import PrivateBrokers

    brokers = PrivateBrokers()
    yield brokers
    brokers.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Every adapter."""
    return request.param


@pytest.fixture(params=NETWORK_KINDS)
def network_kind(request: pytest.FixtureRequest) -> str:
    """Adapters over a network: for crashes, dropped connections, credentials."""
    return request.param


BrokerFactory = Callable[..., Broker]


@pytest.fixture
def make_broker(endpoints: dict[str, Endpoint]) -> Iterator[BrokerFactory]:
    """make_broker(kind, **options): an adapter on a queue of its own (priorities on, where the
    kind needs an option for them), purged afterwards."""
    made: list[Broker] = []

    def make(kind: str, **options: Any) -> Broker:
        driver = registry.get(kind)
        options.setdefault("queue", f"test-{uuid.uuid4().hex[:10]}")
        for key, value in driver.priority_options.items():
            options.setdefault(key, value)
        url = endpoints[kind].url if kind in endpoints else find(kind).url
        broker = driver.open(url, **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        try:
            broker.remove()
        finally:
            broker.close()


@pytest.fixture
def broker(kind: str, make_broker: BrokerFactory) -> Broker:
    return make_broker(kind)
