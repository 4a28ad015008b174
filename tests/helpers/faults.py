"""Test-side wrappers of the fault injectors in benchmarks/faults/inject.py."""

from __future__ import annotations

import os

from benchmarks.faults.inject import inject_raw
from benchmarks.faults.inject import kill_amqp_connections as _kill_amqp
from benchmarks.faults.inject import kill_redis_clients as _kill_redis
from brokers.instances import RabbitMQInstance
from brokers.provision import Endpoint

__all__ = ["inject_raw", "kill_redis_clients", "kill_amqp_connections"]


def kill_redis_clients(url: str) -> int:
    """Kill this process's brokerbench connections."""
    return _kill_redis(url, pid=os.getpid())


def kill_amqp_connections(endpoint: Endpoint) -> int:
    instance = endpoint.instance if isinstance(endpoint.instance, RabbitMQInstance) else None
    return _kill_amqp(instance, pid=os.getpid())
