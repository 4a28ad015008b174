"""Publishing jobs to RabbitMQ with the publisher-confirm mode you choose.

confirms="off"       basic.publish only: "accepted" means written to the socket; a broker crash
                     or a dropped connection loses what was in flight, and nobody is told.
confirms="each"      wait for the broker's confirm of every message before returning (one
                     round trip per job; with persistent messages the broker confirms after
                     the message is written to disk, or to a quorum of replicas).
confirms="windowed"  keep up to ``window`` messages unconfirmed; ``publish`` blocks only when the
                     window is full and ``flush()`` waits for all. Ids handed back (by ``publish``
                     and ``publish_many`` alike) before their confirm are "in flight", not yet
                     "accepted": ``on_accepted`` says when.

With confirms on, a dropped connection is survived: the producer reconnects and publishes again
every message not yet confirmed (so a message may arrive twice: at-least-once, never lost).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pika
import pika.exceptions as pe
from pika import BasicProperties

from ..contract import (
    BrokerUnavailable,
    JobOptions,
    JobSpec,
    Producer,
    PublishRejected,
    check_job_name,
    encode_data,
)
from ..urls import redact
from .codec import build_properties, new_job_id
from .connection import CONNECTION_ERRORS, connect, enable_async_confirms, pump
from .topology import DELAY_HEADER

if TYPE_CHECKING:
    from .broker import RabbitMQBroker

log = logging.getLogger(__name__)
CONFIRM_MODES = ("off", "each", "windowed")
FLUSH_EVERY = 128  # confirms off: push buffered messages to the socket this often


@dataclass
class Outgoing:
    job_id: str
    exchange: str
    routing_key: str
    body: bytes
    properties: BasicProperties
    delay_ms: int


class AmqpProducer(Producer):
    """Publishes jobs to the queue's exchanges (see the module's text for the confirm modes).

    Not thread-safe: one producer per thread (pika's connection belongs to one thread).

    :param broker: the adapter (its URL and topology).
    :param confirms: "off", "each" or "windowed" publisher confirms.
    :param window: unconfirmed messages allowed in flight with windowed confirms.
    :param persistent: persistent (delivery mode 2) or transient messages.
    :param reconnect_for_s: how long a dropped connection is retried before publishing fails
        with BrokerUnavailable.
    :param confirm_timeout_s: how long to wait for outstanding confirms before PublishRejected.
    """

    def __init__(self, broker: "RabbitMQBroker", *, confirms: str = "windowed", window: int = 256,
                 persistent: bool = True, reconnect_for_s: float = 30.0,
                 confirm_timeout_s: float = 30.0) -> None:
        if confirms not in CONFIRM_MODES:
            raise ValueError(f"confirms must be one of {CONFIRM_MODES}, got {confirms!r}")
        if window < 1:
            raise ValueError("window must be >= 1")
        self._broker = broker
        self.confirms = confirms
        self.window = 1 if confirms == "each" else window
        self.persistent = persistent
        self.reconnect_for_s = reconnect_for_s
        self.confirm_timeout_s = confirm_timeout_s
        self.confirmed = 0          # messages the broker confirmed
        self.republished = 0        # messages sent again after a dropped connection
        self._unconfirmed: dict[int, Outgoing] = {}
        self._nacked: list[str] = []
        self._carry: list[Outgoing] = []          # to resend after a reconnect
        self._returned: list[Outgoing] = []       # returned unroutable: to resend
        self._returned_ids: set[str] = set()
        self._broken: BaseException | None = None  # set while the connection must be reopened
        self._failing_since: float | None = None
        self._seq = 0
        self._conn: pika.BlockingConnection | None = None
        self._open()

    # --------------------------------------------------------------------------- connection
    def _open(self) -> None:
        broker = self._broker
        self._conn = connect(broker.url, role="producer", connect_timeout=broker.connect_timeout)
        self._ch = self._conn.channel()
        broker.topology.declare(self._ch)
        self._seq = 0
        self._ch._impl.add_on_return_callback(self._on_return)  # noqa: SLF001
        if self.confirms != "off":
            enable_async_confirms(self._conn, self._ch, self._on_confirm)

    def _reopen(self) -> None:
        """Reconnect after a dropped connection and resend every unconfirmed message, oldest
        first. A message leaves ``_carry`` only once it was handed to the new channel, so a
        second drop in the middle loses nothing: the next reopen carries on."""
        self._carry = [self._unconfirmed[tag] for tag in sorted(self._unconfirmed)] + self._carry
        self._unconfirmed = {}
        self._broker.topology.forget_delay_queues()
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass
        self._open()
        while self._carry:
            self._send(self._carry[0])
            self._carry.pop(0)
            self.republished += 1
        self._broken = None

    def _on_return(self, _channel: Any, _method: Any, props: BasicProperties, _body: bytes) -> None:
        """A message the broker could not route (a delay queue deleted under us): send it again
        once the confirm that follows the return arrives."""
        self._returned_ids.add(props.message_id)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tags = [t for t in self._unconfirmed if t <= method.delivery_tag] if method.multiple \
            else [method.delivery_tag]
        ok = isinstance(method, pika.spec.Basic.Ack)
        ids = []
        for tag in tags:
            item = self._unconfirmed.pop(tag, None)
            if item is None:
                continue
            if item.job_id in self._returned_ids:
                self._returned_ids.discard(item.job_id)
                self._returned.append(item)
            elif ok:
                ids.append(item.job_id)
            else:
                self._nacked.append(item.job_id)
        self.confirmed += len(ids)
        self._accepted(ids)

    # ---------------------------------------------------------------------------- publishing
    def _prepare(self, spec: JobSpec) -> Outgoing:
        check_job_name(spec.name)
        topology = self._broker.topology
        options = spec.options
        job_id = options.job_id or new_job_id()
        props = build_properties(job_id, spec.name, options, persistent=self.persistent,
                                 amqp_priority=topology.amqp_priority(options.priority))
        body = encode_data(spec.data).encode()
        if options.delay_ms > 0:
            props.headers[DELAY_HEADER] = str(options.delay_ms)
            return Outgoing(job_id, topology.delay_exchange, spec.name, body, props, options.delay_ms)
        return Outgoing(job_id, topology.exchange, spec.name, body, props, 0)

    def _send(self, item: Outgoing) -> None:
        # The channel underneath BlockingChannel: buffer the frames without a socket round of
        # I/O per message; _wait/flush push them out (pika's blocking basic_publish flushes each).
        if item.delay_ms:
            self._broker.topology.ensure_delay_queue(self._ch, item.delay_ms)
        self._ch._impl.basic_publish(item.exchange, item.routing_key, item.body,  # noqa: SLF001
                                     item.properties, mandatory=True)
        self._seq += 1
        if self.confirms != "off":
            self._unconfirmed[self._seq] = item
            return
        self._accepted([item.job_id])  # no confirms: "accepted" is all a producer can know
        if self._seq % FLUSH_EVERY == 0:
            assert self._conn is not None
            pump(self._conn)

    def _wait(self, max_unconfirmed: int) -> None:
        assert self._conn is not None
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            pump(self._conn, lambda: len(self._unconfirmed) <= max_unconfirmed or bool(self._returned),
                 lambda: time.monotonic() > deadline)
            if not self._returned:
                break
            self._broker.topology.forget_delay_queues()  # declare the missing queue again
            returned, self._returned = self._returned, []
            for item in returned:
                self._send(item)
        if len(self._unconfirmed) > max_unconfirmed:
            raise PublishRejected(
                f"no publisher confirm from RabbitMQ within {self.confirm_timeout_s:.0f} s "
                f"(is it blocking publishers on a resource alarm?)",
                [item.job_id for item in self._unconfirmed.values()])
        if self._nacked:
            nacked, self._nacked = self._nacked, []
            raise PublishRejected(f"RabbitMQ refused {len(nacked)} message(s) (basic.nack)", nacked)

    def _guarded(self, action: Callable[[], Any]) -> Any:
        """Run a publishing step; on a dropped connection reconnect, resend what is unconfirmed,
        and run the step again, for up to ``reconnect_for_s`` seconds."""
        while True:
            try:
                if self._broken is not None:
                    self._reopen()
                result = action()
                self._failing_since = None
                return result
            except pe.ConnectionBlockedTimeout:
                raise PublishRejected("RabbitMQ blocked this publisher (memory or disk alarm) for "
                                      "longer than the blocked-connection timeout",
                                      [i.job_id for i in self._unconfirmed.values()]) from None
            except (*CONNECTION_ERRORS, BrokerUnavailable) as exc:
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                    log.warning("producer lost RabbitMQ at %s (%r); reconnecting", redact(self._broker.url), exc)
                elif now - self._failing_since > self.reconnect_for_s:
                    raise BrokerUnavailable(f"RabbitMQ at {redact(self._broker.url)} unreachable for "
                                            f"{self.reconnect_for_s:.0f} s while publishing: {exc!r}") from None
                else:
                    time.sleep(0.5)
                self._broken = exc

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str:
        item = self._prepare(JobSpec(name, data, options or JobOptions()))
        self._guarded(lambda: self._send(item))
        if self.confirms != "off":
            self._guarded(lambda: self._wait(self.window - 1))
        return item.job_id

    def publish_many(self, jobs: Iterable[JobSpec]) -> list[str]:
        items = [self._prepare(spec) for spec in jobs]  # every id exists before anything is sent
        for n, item in enumerate(items):
            try:
                self._guarded(lambda item=item: self._send(item))
                if self.confirms != "off" and len(self._unconfirmed) >= self.window:
                    self._guarded(lambda: self._wait(self.window - 1))
            except PublishRejected as exc:
                raise PublishRejected(str(exc), exc.job_ids + [i.job_id for i in items[n + 1:]]) from None
        if self.confirms == "off":
            self.flush()  # push buffered frames out; nothing more can be known without confirms
        else:
            self._guarded(lambda: self._wait(self.window - 1))  # push frames out, read confirms
        return [item.job_id for item in items]

    def flush(self) -> None:
        if self.confirms != "off":
            self._guarded(lambda: self._wait(0))
        elif self._conn is not None:
            self._guarded(lambda: pump(self._conn))

    def idle(self, seconds: float) -> None:
        if seconds > 0 and self._conn is not None:
            self._guarded(lambda: self._conn.process_data_events(time_limit=seconds))

    @property
    def in_flight(self) -> int:
        return len(self._unconfirmed)

    def close(self) -> None:
        try:
            if self._conn is not None and self._conn.is_open:
                try:
                    self.flush()
                finally:
                    self._conn.close()
        except CONNECTION_ERRORS:
            pass
