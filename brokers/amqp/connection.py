"""AMQP connections on pika: a clear error when RabbitMQ is down or refuses the credentials.

pika's BlockingConnection is not thread-safe: each producer and worker owns its connection and
uses it from one thread; other threads reach it only through ``add_callback_threadsafe``.

A cluster: ``amqp://user:pass@host1:port1,host2:port2,host3:port3/vhost`` names several nodes
of one cluster (same credentials and vhost). Each connect tries them in a random order, so
clients spread over the nodes and a reconnect after a node is lost lands on a live one.

A URL pika cannot read (a password holding '/', '?', '#' or '@' must be percent-encoded) is a
:class:`~brokers.contract.BrokerError` whose message shows the URL redacted and never the
parser's own words (pika's ValueError quotes the piece it could not read: part of the secret).
"""

from __future__ import annotations

import os
import random
import select
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions as pe
from pika.adapters.blocking_connection import BlockingChannel

from ..contract import AuthenticationFailed, BrokerError, BrokerUnavailable
from ..urls import ambiguous_credentials, redact

POLL_TICK_S = 0.001  # pika's epoll poller waits in whole milliseconds

# What a dropped connection or channel looks like from pika.
CONNECTION_ERRORS = (pe.AMQPConnectionError, pe.ConnectionClosed, pe.StreamLostError,
                     pe.ChannelWrongStateError, pe.ChannelClosedByBroker, pe.ConnectionWrongStateError,
                     ConnectionError, OSError)


def node_urls(url: str) -> list[str]:
    """One URL per node of ``amqp://user:pass@h1:p1,h2:p2/vhost`` (a one-node URL: itself).
    BrokerError (redacted) if the URL cannot be split or its credentials are ambiguous."""
    if ambiguous_credentials(url):
        raise BrokerError(f"{redact(url)} is not an AMQP URL brokerbench can use: its credentials or vhost hold "
                          "an unencoded '/', '?', '#' or '@'; percent-encode them (urllib.parse.quote(password, "
                          "safe=''))")
    try:
        parts = urlsplit(url)
    except Exception as exc:  # noqa: BLE001 - a parser's words may quote the secret
        failed = type(exc).__name__
    else:
        failed = ""
    if failed:  # raised out here: the parser's error is not kept as its context either
        raise _unusable(url, failed)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return [url]
    return [urlunsplit((parts.scheme, f"{userinfo}{at}{host.strip()}", parts.path, parts.query, parts.fragment))
            for host in hosts.split(",") if host.strip()]


def _unusable(url: str, failed: str) -> BrokerError:
    """The error for a URL pika cannot use: the URL redacted and the name of the parser's error,
    never its message (it quotes what it could not read, which may be part of the password)."""
    return BrokerError(f"{redact(url)} is not an AMQP URL brokerbench can use ({failed}); "
                       "percent-encode the password (urllib.parse.quote(password, safe=''))")


def parameters(url: str, *, role: str, connect_timeout: float = 3.0, heartbeat: int = 30,
               blocked_timeout: float = 60.0) -> pika.URLParameters:
    """pika's parameters for a one-node URL; BrokerError (redacted) if pika cannot read it."""
    if ambiguous_credentials(url):
        node_urls(url)  # raises the error that says so
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # noqa: BLE001 - ValueError mostly; pika's ssl options may raise others
        failed = type(exc).__name__
    else:
        failed = ""
    if failed:  # raised out here: pika's error (it quotes the piece it could not read) is not kept
        raise _unusable(url, failed)
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = connect_timeout
    params.stack_timeout = connect_timeout + 2
    params.blocked_connection_timeout = blocked_timeout
    params.heartbeat = heartbeat
    params.client_properties = {"connection_name": f"brokerbench:{role}:{os.getpid()}",
                                "product": "brokerbench"}
    return params


def connect(url: str, *, role: str, connect_timeout: float = 3.0,
            **kwargs: Any) -> pika.BlockingConnection:
    """Open a connection (to one live node of a cluster URL, tried in random order), or raise
    BrokerUnavailable / AuthenticationFailed saying why, or BrokerError for a URL pika cannot
    read; every message shows the URL redacted."""
    nodes = node_urls(url)
    random.shuffle(nodes)
    settings = [parameters(node, role=role, connect_timeout=connect_timeout, **kwargs) for node in nodes]
    try:
        return pika.BlockingConnection(settings)
    except (pe.ProbableAuthenticationError, pe.AuthenticationError) as exc:
        raise AuthenticationFailed(f"RabbitMQ at {redact(url)} refused the credentials: "
                                   f"{exc!r}") from None
    except pe.ProbableAccessDeniedError as exc:
        raise AuthenticationFailed(f"RabbitMQ at {redact(url)} denied access to the vhost: "
                                   f"{exc!r}") from None
    except (pe.AMQPError, OSError) as exc:
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)} is unreachable: {exc!r}") from None


def enable_async_confirms(connection: pika.BlockingConnection, channel: BlockingChannel,
                          on_confirm: Callable[[pika.frame.Method], None]) -> None:
    """Publisher confirms delivered to ``on_confirm`` instead of blocking each publish.

    BlockingChannel.confirm_delivery() makes every basic_publish wait for its own confirm; a
    window of unconfirmed messages needs the confirm callbacks of the channel underneath, so
    this reaches into pika's ``_impl`` (stable through pika 1.x, pinned in pyproject).
    """
    done: list[bool] = []
    channel._impl.confirm_delivery(ack_nack_callback=on_confirm,  # noqa: SLF001
                                   callback=lambda _frame: done.append(True))
    pump(connection, lambda: bool(done))  # returns on Confirm.SelectOk (process_data_events would sit out its limit)


def pump(connection: pika.BlockingConnection, *waiters: Callable[[], bool], deadline: float | None = None) -> None:
    """Do I/O on ``connection`` until its output is flushed and any waiter is true, or, with a
    ``deadline`` (time.monotonic()), until then at the latest.

    Without a deadline this is pika's own wait loop (what BlockingChannel uses for its
    confirms); it blocks on the socket instead of spinning, and wakes on I/O or pika's timers.
    pika's loop cannot end while output is unsent, and it looks at its waiters only when I/O or
    a timer wakes it: a broker that stops reading (a resource alarm blocks publishers) would
    hold it until the alarm clears. With a deadline, a timer wakes the loop on time and it ends
    then whether the output went out or not (what is unsent stays in pika's buffer); it ends
    within microseconds of the deadline, not pika's millisecond (a paced producer idles here).
    """
    coalesce_output(connection)
    if deadline is None:
        connection._flush_output(*waiters)  # noqa: SLF001
        return
    impl = connection._impl  # noqa: SLF001
    if connection.is_closed:
        raise pe.ConnectionWrongStateError()
    polled = False
    while not connection._closed_result.ready:  # noqa: SLF001
        flushed = not impl._transport or impl._get_write_buffer_size() == 0  # noqa: SLF001
        if flushed and any(ready() for ready in waiters):
            break
        left = deadline - time.monotonic()
        if polled and left <= 0:  # one round of I/O even when the deadline is past
            break
        if not flushed:  # pika's poll returns once the socket takes the output, or at the deadline
            _poll_once(impl, max(left, 0.0))
        elif left > POLL_TICK_S:
            # pika's poller (epoll) waits in whole milliseconds, rounded up: wake a tick early
            # and wait out the rest below, so an idle producer is back on time.
            _poll_once(impl, left - POLL_TICK_S)
        elif _readable(impl, left):  # the last tick: select() waits to the microsecond
            _poll_once(impl, 0.0)
        polled = True
    closed = connection._closed_result  # noqa: SLF001
    if closed.ready:  # as pika's own loop: raise why it closed (unless we closed it), then clean up
        try:
            if not isinstance(closed.value.error, pe.ConnectionClosedByClient):
                raise closed.value.error
        finally:
            connection._cleanup()  # noqa: SLF001


def _poll_once(impl: Any, wait_s: float) -> None:
    """One round of pika's I/O, waiting at most ``wait_s`` for it (a timer bounds the wait)."""
    timer = impl.ioloop.call_later(wait_s, lambda: None)
    try:
        impl.ioloop.poll()
        impl.ioloop.process_timeouts()
    finally:
        impl.ioloop.remove_timeout(timer)


def _readable(impl: Any, wait_s: float) -> bool:
    """Wait up to ``wait_s`` (to the microsecond) for the connection's socket to have data."""
    sock = getattr(getattr(impl, "_transport", None), "_sock", None)
    if sock is None:
        time.sleep(max(wait_s, 0.0))
        return True  # no socket to watch: let pika's loop find out what happened
    try:
        return bool(select.select([sock], [], [], max(wait_s, 0.0))[0])
    except (OSError, ValueError):
        return True


def coalesce_output(connection: pika.BlockingConnection) -> None:
    """Join the frames pika has buffered for the socket into one chunk. pika sends each buffered
    frame with its own ``send`` call (a message is three frames: method, header, body), so a
    batch of 1,000 messages cost 3,000 system calls; joined, it costs a few. The bytes and their
    order do not change. Reaches into pika's transport (pika 1.x, pinned in pyproject); where
    the attribute is missing it does nothing."""
    transport = getattr(getattr(connection, "_impl", None), "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    if buffers is not None and len(buffers) > 1:
        joined = b"".join(buffers)
        buffers.clear()
        buffers.append(joined)
