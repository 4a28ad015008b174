"""Faults tests inject through each kind's driver: raw bad messages, server-side connection kills."""

from __future__ import annotations

import os

from brokers import registry
from brokers.contract import Broker
from brokers.provision import Endpoint


def inject_raw(broker: Broker, name: str, raw: bytes) -> str:
    """Put a job whose payload is ``raw`` past the producer into the default lane."""
    inject = registry.get(broker.kind).inject_raw
    assert inject is not None, f"{broker.kind} cannot take raw messages"
    return inject(broker, name, raw)


def drop_own_connections(endpoint: Endpoint) -> int:
    """Close, from the broker's side, every brokerbench connection of this test process."""
    drop = registry.get(endpoint.kind).drop_connections
    assert drop is not None, f"{endpoint.kind} cannot drop connections"
    return drop(endpoint.url, endpoint.instance, pid=os.getpid())
