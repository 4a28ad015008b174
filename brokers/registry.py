"""Adapter names -> adapter classes. Harness code names brokers by these strings."""

from __future__ import annotations

from importlib import import_module

from .contract import Broker

ADAPTERS = {
    "redis": "brokers.bullmq_redis.broker:BullMQRedisBroker",
    "rabbitmq": "brokers.amqp.broker:RabbitMQBroker",
    "memory": "brokers.memory:MemoryBroker",
}


def adapter_class(kind: str) -> type[Broker]:
    try:
        module, _, name = ADAPTERS[kind].partition(":")
    except KeyError:
        raise ValueError(f"unknown broker {kind!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    return getattr(import_module(module), name)
