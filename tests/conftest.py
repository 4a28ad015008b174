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
from typing import Any, Callable, Iterator, Mapping

import pytest

from brokers import registry
from brokers.contract import Broker
from brokers.provision import Endpoint, find

KINDS = registry.kinds()
NETWORK_KINDS = registry.kinds(in_process=False)

logging.getLogger("pika").setLevel(logging.WARNING)


class LazyEndpoints(Mapping[str, Endpoint]):
    """The network kinds' brokers, each found the first time a test asks for it: a test of one
    kind never waits for (or fails on) another kind's broker."""

    def __init__(self, kinds: list[str]) -> None:
        self._kinds = list(kinds)
        self._found: dict[str, Endpoint] = {}

    def __getitem__(self, kind: str) -> Endpoint:
        if kind not in self._kinds:
            raise KeyError(kind)
        if kind not in self._found:
            self._found[kind] = find(kind)
        return self._found[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds


@pytest.fixture(scope="session")
def endpoints() -> Mapping[str, Endpoint]:
    return LazyEndpoints(NETWORK_KINDS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*features): the test needs these features of the adapter "
                                       "(brokers.contract.Capabilities.FEATURES, or 'bounded_queue')")


def unsupported(kind: str, features: tuple[str, ...]) -> str | None:
    """Why ``kind`` cannot run a test that needs ``features``, from what it declares (its
    capabilities, its driver's queue bound), or None when it can."""
    driver = registry.get(kind)
    for feature in features:
        if feature == "bounded_queue":
            bound = driver.queue_bound
            if bound is None or not (bound.server or bound.options):
                return f"{kind} declares no way to bound its queue (its driver's queue_bound is empty)"
            continue
        why = driver.adapter().capabilities.lacks(feature)
        if why:
            return f"{kind} {why}"
    return None


@pytest.fixture(autouse=True)
def _declared_support(request: pytest.FixtureRequest) -> None:
    """A test marked ``needs(...)`` is skipped, with the adapter's own reason, for a kind that
    declares the feature unsupported; never failed. The built-in kinds declare every feature
    the suite marks, so on them nothing is skipped."""
    marker = request.node.get_closest_marker("needs")
    callspec = getattr(request.node, "callspec", None)
    if marker is None or callspec is None:
        return
    kind = callspec.params.get("kind") or callspec.params.get("network_kind")
    if isinstance(kind, str):
        why = unsupported(kind, tuple(marker.args))
        if why:
            pytest.skip(why)


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
