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

Failures, told apart:

* Bad input (too big, a delay out of range, a bad name...) raises InvalidJob before anything is
  sent (:mod:`brokers.contract`).
* The broker closing the CHANNEL (406 precondition failed, 404 not found, 403 access refused...:
  a reason tied to a message or a declaration) is not an outage: the publish fails at once
  naming the broker's reason, and every job not yet confirmed is given back, never resent. With
  one job unconfirmed, that job caused the close: PublishRejected. With several, the broker may
  have queued those before the one it refused and lost their confirms with the channel:
  PublishInDoubt names them all. The producer opens a new channel and stays usable.
* A negative confirm raises PublishRejected on classic queues (a full lane with
  reject-publish, an internal error): those jobs are not queued. On quorum queues it raises
  PublishInDoubt: they nack in-flight publishes while their leader changes, and some of those
  are committed all the same (seen here: 18 of 1,789 nacked jobs ran).
* No confirm in ``confirm_timeout_s`` (a resource alarm holds them), or a connection blocked
  past pika's blocked-connection timeout, raises PublishInDoubt: the messages were sent and the
  broker may queue them once the alarm clears. They are forgotten, never resent.
* A dropped CONNECTION is an outage: with confirms on, the producer reconnects for up to
  ``reconnect_for_s`` and publishes again every message not yet confirmed (so a message may
  arrive twice: at-least-once, never lost); after that, UnavailableInDoubt gives back the
  messages still unconfirmed (in doubt), or BrokerUnavailable when there were none.
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
    Fate,
    InvalidJob,
    JobOptions,
    JobSpec,
    Producer,
    PublishFailed,
    PublishInDoubt,
    PublishRejected,
    check_job_name,
    encode_data,
)
from ..urls import redact
from .codec import build_properties, new_job_id
from .connection import CONNECTION_ERRORS, connect, enable_async_confirms, pump

if TYPE_CHECKING:
    from .broker import RabbitMQBroker

log = logging.getLogger(__name__)

# Unconfirmed messages a windowed producer keeps in flight. A larger window publishes batches
# faster (measured here, batches of 1,000 jobs with confirms, median of 3 rounds: 256 -> 12,900
# jobs/s, 1,024 -> 15,900, 4,096 -> 17,700), but a producer then learns later that the broker
# stopped confirming: only once the window is full (at 200 jobs/s one at a time, 1.3 s with 256,
# 5 s with 1,024) and then after confirm_timeout_s, and it hands back that many jobs at once.
DEFAULT_WINDOW = 256
CONFIRM_MODES = ("off", "each", "windowed")
FLUSH_EVERY = 128  # confirms off: push buffered messages to the socket this often


@dataclass
class Outgoing:
    job_id: str
    exchange: str
    routing_key: str
    body: bytes
    properties: BasicProperties
    resent: bool = False  # sent again after a reconnect: it may be queued from its first sending


class ChannelClosed(Exception):
    """Internal: the broker closed the publishing channel (the connection is fine)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


class AmqpProducer(Producer):
    """Publishes jobs to the queue's exchanges (see the module's text for the confirm modes and
    for how each failure is reported).

    Not thread-safe: one producer per thread (pika's connection belongs to one thread).

    :param broker: the adapter (its URL, topology and ``max_job_bytes``).
    :param confirms: "off", "each" or "windowed" publisher confirms.
    :param window: unconfirmed messages allowed in flight with windowed confirms (default
        :data:`DEFAULT_WINDOW`).
    :param persistent: persistent (delivery mode 2) or transient messages.
    :param reconnect_for_s: how long a dropped connection is retried before publishing fails
        with BrokerUnavailable.
    :param confirm_timeout_s: how long to wait for outstanding confirms before giving them back
        in doubt (PublishInDoubt).
    """

    def __init__(self, broker: "RabbitMQBroker", *, confirms: str = "windowed", window: int = DEFAULT_WINDOW,
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
        # A nack from a classic queue is a refusal (reject-publish on a full lane, an internal
        # error). A quorum queue nacks in-flight publishes while its leader changes, and some of
        # those were committed all the same: measured here, 18 of 1,789 nacked jobs ran (the
        # replication scenario, a leader SIGKILLed). Its nacks are in doubt.
        self._nack_refuses = broker.topology.queue_type != "quorum"
        self._carry: list[Outgoing] = []          # to resend after a reconnect
        self._returned: list[Outgoing] = []       # returned unroutable: to resend
        self._returned_ids: set[str] = set()
        self._broken: BaseException | None = None  # set while the connection must be reopened
        self._closed_by: tuple[int, str] | None = None  # the broker closed the channel: code, text
        self._failing_since: float | None = None
        self._seq = 0
        self._conn: pika.BlockingConnection | None = None
        self._open()

    # --------------------------------------------------------------------------- connection
    def _open(self, again: bool = False) -> None:
        broker = self._broker
        self._conn = connect(broker.url, role="producer", connect_timeout=broker.connect_timeout)
        self._open_channel(again)

    def _open_channel(self, again: bool = False) -> None:
        """A new channel; ``again`` declares the topology anew (after a reconnect or a channel
        the broker closed: something may have been deleted)."""
        assert self._conn is not None
        self._ch = self._conn.channel()
        self._closed_by = None
        self._ch._impl.add_on_close_callback(self._on_channel_close)  # noqa: SLF001
        self._broker.topology.declare(self._ch, again=again)
        self._seq = 0
        self._ch._impl.add_on_return_callback(self._on_return)  # noqa: SLF001
        if self.confirms != "off":
            enable_async_confirms(self._conn, self._ch, self._on_confirm)

    def _on_channel_close(self, _channel: Any, reason: BaseException) -> None:
        if isinstance(reason, pe.ChannelClosedByBroker):
            self._closed_by = (reason.reply_code, reason.reply_text)

    def _reopen(self) -> None:
        """Reconnect after a dropped connection and resend every unconfirmed message, oldest
        first. A message leaves ``_carry`` only once it was handed to the new channel, so a
        second drop in the middle loses nothing: the next reopen carries on."""
        self._carry = [self._unconfirmed[tag] for tag in sorted(self._unconfirmed)] + self._carry
        self._unconfirmed = {}
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass
        self._open(again=True)
        while self._carry:
            self._carry[0].resent = True
            self._send(self._carry[0])
            self._carry.pop(0)
            self.republished += 1
        self._broken = None

    def _on_return(self, _channel: Any, _method: Any, props: BasicProperties, _body: bytes) -> None:
        """A message the broker could not route (a delay level or a lane deleted under us): sent
        again, after the topology is declared anew, once the confirm that follows arrives."""
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

    def _give_back(self, *, doubt: bool = True) -> tuple[list[str], list[str]]:
        """Forget every message not yet confirmed (they will never be resent) and return their
        ids, oldest first, as (refused, in doubt): messages sent and unanswered are in doubt
        (refused when ``doubt`` is False: the broker said which), messages it returned unroutable
        are refused. The caller owns both now."""
        sent = [self._unconfirmed[tag].job_id for tag in sorted(self._unconfirmed)]
        sent += [item.job_id for item in self._carry]
        nacked_sure = self._nacked if self._nack_refuses else []
        sent += [] if self._nack_refuses else self._nacked
        refused = nacked_sure + [item.job_id for item in self._returned]  # the broker said no to these
        self._unconfirmed, self._returned, self._carry, self._nacked = {}, [], [], []
        self._returned_ids.clear()
        return (refused, sent) if doubt else (refused + sent, [])

    def _check_channel(self) -> None:
        """Raise ChannelClosed if the broker closed our channel while the connection lives."""
        if self._closed_by is not None and self._conn is not None and self._conn.is_open:
            raise ChannelClosed(*self._closed_by)

    # ---------------------------------------------------------------------------- publishing
    def _prepare(self, spec: JobSpec) -> Outgoing:
        if not isinstance(spec, JobSpec):
            raise InvalidJob(f"publish_many takes JobSpec items, got {type(spec).__name__}")
        check_job_name(spec.name)
        topology = self._broker.topology
        options = spec.options
        job_id = options.job_id or new_job_id()
        props = build_properties(job_id, spec.name, options, persistent=self.persistent,
                                 amqp_priority=topology.amqp_priority(options.priority))
        body = encode_data(spec.data, self._broker.max_job_bytes).encode()
        if options.delay_ms > 0:
            exchange, bits = topology.delayed_route(options.delay_ms)
            props.headers.update(bits)
            return Outgoing(job_id, exchange, spec.name, body, props)
        return Outgoing(job_id, topology.exchange, spec.name, body, props)

    def _send(self, item: Outgoing) -> None:
        # The channel underneath BlockingChannel: buffer the frames without a socket round of
        # I/O per message; _wait/flush push them out (pika's blocking basic_publish flushes each).
        self._check_channel()
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
            self._check_channel()

    def _wait(self, max_unconfirmed: int) -> None:
        assert self._conn is not None
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            pump(self._conn, lambda: len(self._unconfirmed) <= max_unconfirmed or bool(self._returned),
                 lambda: self._closed_by is not None, deadline=deadline)
            self._check_channel()
            if not self._returned:
                break
            self._broker.topology.declare(self._ch, again=True)  # declare what was deleted, then resend
            returned, self._returned = self._returned, []
            for item in returned:
                self._send(item)
        if len(self._unconfirmed) > max_unconfirmed:
            refused, doubt = self._give_back()
            raise PublishFailed.make(
                f"no publisher confirm from RabbitMQ within {self.confirm_timeout_s:.0f} s (is it blocking "
                f"publishers on a resource alarm?): {len(doubt)} job(s) in doubt, they may still be queued",
                refused, in_doubt=doubt)
        if self._nacked:
            nacked, self._nacked = self._nacked, []
            if self._nack_refuses:
                raise PublishRejected(f"RabbitMQ refused {len(nacked)} message(s) (basic.nack)", nacked)
            raise PublishInDoubt(f"RabbitMQ nacked {len(nacked)} message(s) of a quorum queue (basic.nack, as a "
                                 "leader changes): in doubt, a quorum queue may hold a message it nacked",
                                 in_doubt=nacked)

    def _guarded(self, action: Callable[[], Any]) -> Any:
        """Run a publishing step. A channel the broker closed fails the step with PublishFailed
        and a new channel; a dropped connection is reconnected (resending what is unconfirmed)
        and the step run again, for up to ``reconnect_for_s`` seconds."""
        while True:
            try:
                if self._broken is not None:
                    self._reopen()
                result = action()
                self._failing_since = None
                return result
            except ChannelClosed as closed:
                self._channel_failed(closed, after_publish=True)
            except pe.ConnectionBlockedTimeout:
                self._broken = BrokerUnavailable("blocked-connection timeout")  # pika closed the connection
                refused, doubt = self._give_back()
                raise PublishFailed.make("RabbitMQ blocked this publisher (memory or disk alarm) for longer than "
                                         f"the blocked-connection timeout: {len(doubt)} job(s) in doubt",
                                         refused, in_doubt=doubt) from None
            except (*CONNECTION_ERRORS, BrokerUnavailable) as exc:
                if self._closed_by is not None and self._conn is not None and self._conn.is_open:
                    self._channel_failed(ChannelClosed(*self._closed_by), after_publish=False)
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                    log.warning("producer lost RabbitMQ at %s (%r); reconnecting", redact(self._broker.url), exc)
                elif now - self._failing_since > self.reconnect_for_s:
                    self._broken = exc  # the next call reconnects afresh
                    why = (f"RabbitMQ at {redact(self._broker.url)} unreachable for {self.reconnect_for_s:.0f} s "
                           f"while publishing: {exc!r}")
                    refused, doubt = self._give_back()
                    if doubt or refused:
                        raise PublishFailed.make(f"{why}; {len(doubt)} job(s) sent and unconfirmed are in doubt",
                                                 refused, in_doubt=doubt, unavailable=True) from None
                    raise BrokerUnavailable(why) from None
                else:
                    time.sleep(0.5)
                self._broken = exc

    def _channel_failed(self, closed: ChannelClosed, *, after_publish: bool) -> None:
        """The broker closed the channel: give the unconfirmed jobs back, open a new channel, say
        why. Refused only when the close came right after a publish and exactly one job, sent
        once on this channel, was unconfirmed: that job caused it. In doubt otherwise: with
        several, the broker may have queued those before the culprit; a close on a declaration
        says nothing of the messages; a job resent after a reconnect may be queued already."""
        pending = [self._unconfirmed[tag] for tag in self._unconfirmed] + self._carry
        culprit = after_publish and len(pending) == 1 and not pending[0].resent
        refused, doubt = self._give_back(doubt=not culprit)
        log.warning("RabbitMQ closed the producer's channel (%s); %d job(s) refused and %d in doubt given back "
                    "to the caller", closed, len(refused), len(doubt))
        try:
            self._open_channel(again=True)
        except (*CONNECTION_ERRORS, BrokerUnavailable) as exc:
            self._broken = exc  # the next call reconnects
        doubt_text = f"; {len(doubt)} job(s) unconfirmed on it are in doubt" if doubt else ""
        raise PublishFailed.make(f"RabbitMQ refused it and closed the channel: {closed.code} {closed.text}"
                                 f"{doubt_text}", refused, in_doubt=doubt) from None

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str:
        if options is not None and not isinstance(options, JobOptions):
            raise InvalidJob(f"options must be JobOptions, got {type(options).__name__}")
        item = self._prepare(JobSpec(name, data, options or JobOptions()))
        try:
            self._guarded(lambda: self._send(item))
        except PublishFailed as exc:  # failed before it was sent: it is not held, the caller owns it
            raise _again(exc, exc.job_ids + [item.job_id], [item], [item]) from None
        if self.confirms != "off":
            try:
                self._guarded(lambda: self._wait(self.window - 1))
            except PublishFailed as exc:
                raise _again(exc, exc.job_ids, [item], []) from None
            except BrokerUnavailable as exc:  # nothing left unconfirmed: its confirm came before the outage
                raise _again(_unavailable(exc), [], [item], []) from None
        return item.job_id

    def publish_many(self, jobs: Iterable[JobSpec]) -> list[str]:
        items = [self._prepare(spec) for spec in jobs]  # every check passes before anything is sent
        # A call may put all its own jobs in flight on top of the window before it reads a confirm:
        # it waits for them at its end anyway, so this costs no later warning of a stalled broker,
        # and it spares the round trips of refilling a small window (see DEFAULT_WINDOW).
        window = self.window + len(items) if self.confirms == "windowed" else self.window
        for n, item in enumerate(items):
            sent = False
            try:
                self._guarded(lambda item=item: self._send(item))
                sent = True
                if self.confirms != "off" and len(self._unconfirmed) >= window:
                    self._guarded(lambda: self._wait(self.window - 1))
            except PublishFailed as exc:
                unsent = items[n + sent:]
                raise _again(exc, exc.job_ids + [item.job_id for item in unsent], items, unsent) from None
            except BrokerUnavailable as exc:
                if n + sent == 0:
                    raise  # nothing of the call was handed over: a plain outage
                unsent = items[n + sent:]
                raise _again(_unavailable(exc), [item.job_id for item in unsent], items, unsent) from None
        try:
            if self.confirms == "off":
                self.flush()  # push buffered frames out; nothing more can be known without confirms
            else:
                self._guarded(lambda: self._wait(self.window - 1))  # push frames out, read confirms
        except PublishFailed as exc:
            raise _again(exc, exc.job_ids, items, []) from None
        except BrokerUnavailable as exc:  # every job was handed over; none is left unconfirmed
            raise _again(_unavailable(exc), [], items, []) from None
        return [item.job_id for item in items]

    def flush(self) -> None:
        if self.confirms != "off":
            self._guarded(lambda: self._wait(0))
        elif self._conn is not None:
            self._guarded(lambda: (pump(self._conn), self._check_channel()))

    def idle(self, seconds: float) -> None:
        """Read confirms for ``seconds``, and return then, even while a blocked broker leaves
        output unsent (pika's process_data_events would wait for it)."""
        if seconds > 0 and self._conn is not None:
            deadline = time.monotonic() + seconds
            self._guarded(lambda: pump(self._conn, deadline=deadline))

    @property
    def in_flight(self) -> int:
        return len(self._unconfirmed)

    def close(self) -> None:
        """Wait for the last confirms (``flush``), then close the connection. Jobs refused or in
        doubt at that moment raise PublishFailed (its message starts with "close:") after the
        connection is closed; a connection already broken closes quietly."""
        failed: PublishFailed | None = None
        try:
            if self._conn is not None and self._conn.is_open:
                try:
                    self.flush()
                except PublishFailed as exc:
                    failed = exc
                finally:
                    self._conn.close()
        except CONNECTION_ERRORS:
            pass
        if failed is not None:
            raise _again(failed, failed.job_ids, [], [], prefix="close: ") from None


def _unavailable(exc: BrokerUnavailable) -> PublishFailed:
    """A plain outage met after some of a call's jobs were handed over, as a PublishFailed that
    is also a BrokerUnavailable (``_again`` then gives each job of the call its fate: those
    handed over and no longer unconfirmed were confirmed, or written with confirms off)."""
    return PublishFailed.make(str(exc), unavailable=True)


def _again(exc: PublishFailed, refused: list[str], items: list[Outgoing], unsent: list[Outgoing], *,
           prefix: str = "") -> PublishFailed:
    """``exc`` as the error of a call over ``items``: each job's fate (unsent jobs are refused,
    jobs ``exc`` names are refused or in doubt, the rest accepted or in flight), the same class
    of error (in doubt, unavailable) as the outcomes now call for."""
    refused_set, doubt_set, unsent_ids = set(refused), set(exc.in_doubt), {item.job_id for item in unsent}
    fates = [Fate.REFUSED if item.job_id in refused_set or item.job_id in unsent_ids
             else Fate.IN_DOUBT if item.job_id in doubt_set else Fate.ACCEPTED for item in items]
    return PublishFailed.make(prefix + str(exc), refused, [item.job_id for item in items] if items else None,
                              in_doubt=exc.in_doubt, fates=fates if items else None,
                              unavailable=isinstance(exc, BrokerUnavailable))
