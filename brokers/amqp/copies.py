"""Retry and dead-letter copies, published by a worker with confirms waited for as a batch.

A worker settles many jobs at once; publishing each copy and waiting for its own confirm would
cost a broker round trip (and, for persistent messages, a disk write) per failed job. Copies of
one batch are published back to back, then their confirms are awaited together. ``mandatory``
is set, so a copy the broker cannot route (a delay level deleted under us) comes back as a
failure instead of vanishing. If the broker closes the channel (a copy it refuses, an exchange
deleted under us), every copy not yet confirmed counts as refused at once (``closed_by`` says
why), with no wait for a timeout: the worker then keeps the originals and opens a new channel.
"""

from __future__ import annotations

import time
from typing import Any

import pika
import pika.exceptions as pe
from pika import BasicProperties
from pika.adapters.blocking_connection import BlockingChannel

from .connection import enable_async_confirms, pump


class CopyPublisher:
    def __init__(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        self.connection, self.channel = connection, channel
        self.closed_by: tuple[int, str] | None = None   # the broker closed the channel: code, text
        self._tag = 0                              # publishes on this channel (confirm tags)
        self._ticket = 0
        self._waiting: dict[int, tuple[int, str]] = {}   # confirm tag -> (ticket, message id)
        self._returned: set[str] = set()
        self._results: dict[int, bool] = {}        # ticket -> accepted
        channel._impl.add_on_return_callback(self._on_return)  # noqa: SLF001
        channel._impl.add_on_close_callback(self._on_close)  # noqa: SLF001
        enable_async_confirms(connection, channel, self._on_confirm)

    def _on_return(self, _ch: Any, _method: Any, props: BasicProperties, _body: bytes) -> None:
        self._returned.add(props.message_id)

    def _on_close(self, _ch: Any, reason: BaseException) -> None:
        if isinstance(reason, pe.ChannelClosedByBroker):
            self.closed_by = (reason.reply_code, reason.reply_text)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self._waiting if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            found = self._waiting.pop(tag, None)
            if found is not None:
                ticket, message_id = found
                self._results[ticket] = ok and message_id not in self._returned
                self._returned.discard(message_id)

    @property
    def usable(self) -> bool:
        return self.closed_by is None and self.channel.is_open

    def publish(self, exchange: str, routing_key: str, body: bytes, props: BasicProperties) -> int:
        """Send a copy; returns its ticket for :meth:`wait` (refused at once if the channel is closed)."""
        self._ticket += 1
        if not self.usable:
            self._results[self._ticket] = False
            return self._ticket
        self.channel._impl.basic_publish(exchange, routing_key, body, props, mandatory=True)  # noqa: SLF001
        self._tag += 1
        self._waiting[self._tag] = (self._ticket, props.message_id)
        return self._ticket

    def wait(self, timeout_s: float = 30.0) -> dict[int, bool]:
        """Confirms of every copy sent since the last wait: ticket -> accepted (False: nacked,
        returned, the channel closed, or no answer in time)."""
        deadline = time.monotonic() + timeout_s
        if self._waiting:
            pump(self.connection, lambda: not self._waiting, lambda: self.closed_by is not None,
                 lambda: time.monotonic() > deadline)
        results, self._results = self._results, {}
        for ticket, _ in self._waiting.values():
            results[ticket] = False
        self._waiting.clear()
        return results
