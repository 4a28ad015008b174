"""Retry and dead-letter copies, published by a worker with confirms waited for as a batch.

A worker settles many jobs at once; publishing each copy and waiting for its own confirm would
cost a broker round trip (and, for persistent messages, a disk write) per failed job. Copies of
one batch are published back to back, then their confirms are awaited together. ``mandatory``
is set, so a copy the broker cannot route (a delay queue deleted under us) comes back as a
failure instead of vanishing.
"""

from __future__ import annotations

import time
from typing import Any

import pika
from pika import BasicProperties
from pika.adapters.blocking_connection import BlockingChannel

from .connection import enable_async_confirms, pump


class CopyPublisher:
    def __init__(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        self.connection, self.channel = connection, channel
        self._seq = 0
        self._waiting: dict[int, str] = {}       # delivery tag -> message id
        self._returned: set[str] = set()
        self._results: dict[int, bool] = {}
        channel._impl.add_on_return_callback(self._on_return)  # noqa: SLF001
        enable_async_confirms(connection, channel, self._on_confirm)

    def _on_return(self, _ch: Any, _method: Any, props: BasicProperties, _body: bytes) -> None:
        self._returned.add(props.message_id)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self._waiting if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            message_id = self._waiting.pop(tag, None)
            if message_id is not None:
                self._results[tag] = ok and message_id not in self._returned
                self._returned.discard(message_id)

    def publish(self, exchange: str, routing_key: str, body: bytes, props: BasicProperties) -> int:
        """Send a copy; returns its ticket for :meth:`wait`."""
        self.channel._impl.basic_publish(exchange, routing_key, body, props, mandatory=True)  # noqa: SLF001
        self._seq += 1
        self._waiting[self._seq] = props.message_id
        return self._seq

    def wait(self, timeout_s: float = 30.0) -> dict[int, bool]:
        """Confirms of every copy sent since the last wait: ticket -> accepted (False: nacked,
        returned, or no answer in time)."""
        deadline = time.monotonic() + timeout_s
        pump(self.connection, lambda: not self._waiting, lambda: time.monotonic() > deadline)
        results, self._results = self._results, {}
        for tag in self._waiting:
            results[tag] = False
        self._waiting.clear()
        return results
