"""Retry and dead-letter copies, published by a worker on a connection of their own, confirmed
as they come.

A worker settles many jobs at once; publishing each copy and waiting for its own confirm would
cost a broker round trip (and, for persistent messages, a disk write) per failed job. Copies are
published back to back and their confirms collected as they arrive (:meth:`CopyPublisher.results`).
``mandatory`` is set, so a copy the broker cannot route (a delay level deleted under us) comes
back as refused instead of vanishing. If the broker closes the channel (a copy it refuses, an
exchange deleted under us), every copy not yet confirmed counts as refused at once
(``closed_by`` says why).

The connection is the worker's second one, as RabbitMQ advises: under a memory or disk alarm
RabbitMQ blocks connections that publish; with copies on the consuming connection, its acks
would stop too, the alarm could not clear, and after the blocked-connection timeout every
unacked job would be redelivered. Here only the copies wait (``blocked``); acks go on.
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
        self.blocked = False                       # the broker blocks this connection (an alarm)
        self._tag = 0                              # publishes on this channel (confirm tags)
        self._ticket = 0
        self._waiting: dict[int, tuple[int, str]] = {}   # confirm tag -> (ticket, message id)
        self._returned: set[str] = set()
        self._results: dict[int, bool] = {}        # ticket -> accepted
        channel._impl.add_on_return_callback(self._on_return)  # noqa: SLF001
        channel._impl.add_on_close_callback(self._on_close)  # noqa: SLF001
        connection.add_on_connection_blocked_callback(lambda *_: setattr(self, "blocked", True))
        connection.add_on_connection_unblocked_callback(lambda *_: setattr(self, "blocked", False))
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
        return self.closed_by is None and self.channel.is_open and self.connection.is_open

    @property
    def pending(self) -> int:
        """Copies sent and not yet confirmed or refused."""
        return len(self._waiting)

    def publish(self, exchange: str, routing_key: str, body: bytes, props: BasicProperties) -> int:
        """Send a copy; returns its ticket for :meth:`results` (refused at once if the channel is closed)."""
        self._ticket += 1
        if not self.usable:
            self._results[self._ticket] = False
            return self._ticket
        self.channel._impl.basic_publish(exchange, routing_key, body, props, mandatory=True)  # noqa: SLF001
        self._tag += 1
        self._waiting[self._tag] = (self._ticket, props.message_id)
        return self._ticket

    def results(self, wait_s: float = 0.0) -> dict[int, bool]:
        """Copies settled since the last call, ticket -> accepted (False: nacked, returned, or
        the channel closed). Waits up to ``wait_s`` for the rest, but not while the broker
        blocks the connection: those stay pending, to be asked again."""
        if self._waiting and self.usable:
            self.connection.process_data_events(time_limit=0)  # read what came: confirms, (un)blocked
            if wait_s > 0:
                deadline = time.monotonic() + wait_s
                pump(self.connection, lambda: not self._waiting, lambda: self.closed_by is not None,
                     lambda: self.blocked, lambda: time.monotonic() >= deadline)
        if not self.usable:  # closed: nothing pending will be confirmed any more
            for ticket, _ in self._waiting.values():
                self._results[ticket] = False
            self._waiting.clear()
        results, self._results = self._results, {}
        return results

    def give_up(self) -> list[int]:
        """Stop waiting: the tickets still pending (their fate is unknown)."""
        tickets = [ticket for ticket, _ in self._waiting.values()]
        self._waiting.clear()
        return tickets
