"""Redis connections for the adapter: a clear error when Redis is down, reconnects when it drops.

Each command that fails on a broken connection is retried on a fresh one with exponential
backoff for about ``reconnect_for`` seconds (redis-py's Retry), so a killed client connection
or a broker restart is survived. A Lua script whose reply was lost is then sent again, the same
call: the scripts that must not act twice (addJobs, moveToActive, moveToFinished) carry a call
key and answer a second run from what the first did (lua/include/queue.lua), so a retried
addJobs adds nothing twice and a retried settle neither counts a settled job as lost nor strands
the jobs the lost reply handed out.

The version is checked at connect: the scripts use Redis 7's ``#!lua flags=`` header.

Sentinel: a URL ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`` names
the Sentinels (comma-separated) and the monitored service; every new connection asks a Sentinel
for the current primary (redis-py's SentinelConnectionPool), so after a failover the retry above
lands on the promoted replica. A connection still open to a demoted primary gets READONLY, which
redis-py turns into a ConnectionError, retried the same way. The password (if any) is the Redis
nodes' (``requirepass``); the Sentinels are asked without one, or with the query parameter
``sentinel_password``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)
from redis.retry import Retry

from ..contract import AuthenticationFailed, BrokerError, BrokerUnavailable, PublishRejected
from ..urls import ambiguous_credentials, redact

T = TypeVar("T")


_noted = threading.local()  # the errors the attempts of this thread's current call met


class _NotingRetry(Retry):
    """redis-py's Retry, which also notes each error an attempt met on this thread, so that a
    call that finally failed can tell whether any attempt may have reached Redis
    (:func:`attempts`)."""

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], *args: Any, **kwargs: Any) -> T:
        def noted(error: Exception, *rest: Any) -> Any:
            errors = getattr(_noted, "errors", None)
            if errors is not None:
                errors.append(error)
            return fail(error, *rest)
        return super().call_with_retry(do, noted, *args, **kwargs)


def _retry(reconnect_for: float) -> Retry:
    """Retries spaced 0.05, 0.1, 0.2 ... s (capped at 1 s), as many as fit in ``reconnect_for``."""
    retries, waited, step = 0, 0.0, 0.05
    while waited < reconnect_for:
        waited += step
        step = min(step * 2, 1.0)
        retries += 1
    return _NotingRetry(ExponentialBackoff(cap=1.0, base=0.05), max(retries, 1))


# What a failed attempt says when it cannot have delivered a whole command to Redis: no
# connection was made, the command was not fully written, or a demoted primary refused it.
_NOT_SENT = ("connecting to", "Timeout connecting", "while writing to socket", "previous master is now a slave",
             "No master found")


class Attempts:
    """The errors met by the attempts of the calls made inside ``with attempts() as tried:``."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def may_have_sent(self, final: BaseException | None = None) -> bool:
        """True unless every failed attempt, and ``final`` (the error the call ended with, which
        redis-py may not have retried), certainly failed before Redis ran the command: no
        connection, a command not fully written, or a reply refusing it (READONLY, LOADING...).
        A reply lost, timed out or unreadable after a full write is a maybe."""
        return any(not _not_sent(error) for error in [*self.errors, *([final] if final is not None else [])])


def _not_sent(error: BaseException) -> bool:
    """The error says Redis did not run the command."""
    if unavailable_reply(error) or isinstance(error, AuthenticationError):
        return True
    return isinstance(error, (ConnectionError, TimeoutError)) and any(mark in str(error) for mark in _NOT_SENT)


@contextlib.contextmanager
def attempts() -> Iterator[Attempts]:
    """Note the errors of the retried attempts of the calls made in the block, on this thread."""
    tried = Attempts()
    outer = getattr(_noted, "errors", None)
    _noted.errors = tried.errors
    try:
        yield tried
    finally:
        _noted.errors = outer


SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelAddress:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None
    sentinel_password: str | None


def parse_sentinel_url(url: str) -> SentinelAddress:
    """``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``; ValueError if malformed."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    password = unquote(userinfo.split(":", 1)[1]) if ":" in userinfo else None
    sentinels = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a Sentinel address must be host:port, got {host_port!r}")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("the URL must name the Sentinel service: redis+sentinel://host:port/<service>")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    query = parse_qs(parts.query)
    return SentinelAddress(tuple(sentinels), unquote(path[0]), db, password,
                           query.get("sentinel_password", [None])[0])


@functools.cache
def _following_connection() -> type:
    """redis-py's Sentinel connection, made to ask Sentinel again on EVERY reconnect.

    In redis-py 8.1 a command retried after a dropped connection reconnects through
    ``send_packed_command -> connect_check_health``, which reuses the host and port the
    connection had, skipping the Sentinel lookup in ``connect()``: after a failover such a
    connection knocks on the dead primary until its retries run out (seen here: 90 s). This
    subclass sends that path through ``connect()``, which asks Sentinel for the primary first."""
    from redis.sentinel import SentinelManagedConnection

    class FollowingConnection(SentinelManagedConnection):
        _connecting = False

        def connect_to(self, address: Any) -> None:
            self._connecting = True
            try:
                super().connect_to(address)
            finally:
                self._connecting = False

        def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
            if self._sock or self._connecting:
                return super().connect_check_health(check_health, retry_socket_connect)
            self.connect()

    return FollowingConnection


def client_for(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://``
    (the primary of the service, re-discovered on every new connection). ``options`` are
    redis-py connection options (socket timeouts, retry, client_name...)."""
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return redis.Redis.from_url(url, **options)
    from redis.sentinel import Sentinel, SentinelConnectionPool

    address = parse_sentinel_url(url)
    timeout = options.get("socket_connect_timeout") or 2.0
    sentinel = Sentinel(list(address.sentinels), socket_timeout=timeout,
                        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                         "password": address.sentinel_password})
    pool = SentinelConnectionPool(address.service, sentinel, is_master=True, check_connection=False,
                                  db=address.db, password=address.password,
                                  connection_class=_following_connection(), **options)
    return redis.Redis(connection_pool=pool)


def connect(url: str, *, role: str, connect_timeout: float = 3.0, socket_timeout: float | None = 10.0,
            reconnect_for: float = 20.0, max_connections: int | None = None) -> redis.Redis:
    """A client for ``url``, checked with PING; raises BrokerUnavailable/AuthenticationFailed.
    ``max_connections=1``: every command on one connection (what WAIT needs)."""
    check(url, connect_timeout)
    return client_for(
        url,
        max_connections=max_connections,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        retry=_retry(reconnect_for),
        retry_on_error=[ConnectionError, TimeoutError],
        client_name=f"brokerbench:{role}:{os.getpid()}",
        health_check_interval=15,
    )


def check(url: str, timeout: float = 3.0) -> None:
    """PING once, no retries: fail within ``timeout`` seconds with a message that says why."""
    if ambiguous_credentials(url):
        raise BrokerError(f"{redact(url)} is not a Redis URL brokerbench can use: its credentials hold an "
                          "unencoded '/', '?' or '#' (percent-encode them: %2F, %3F, %23)")
    unparsable = ""
    try:
        probe = client_for(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                           retry=Retry(ExponentialBackoff(), 0))
    except ValueError as exc:  # the parser's words may quote a piece of the URL: say only what kind of error
        unparsable = type(exc).__name__
    if unparsable:  # raised outside the except block, so the parser's error is not even its __context__
        raise BrokerError(f"{redact(url)} is not a Redis URL brokerbench can use ({unparsable} from the "
                          "URL parser; check the scheme, host, port and database number)")
    try:
        probe.ping()
        check_version(url, probe.info("server").get("redis_version", "0"))
    except AuthenticationError as exc:
        raise AuthenticationFailed(f"Redis at {redact(url)} refused the credentials: {exc}") from None
    except ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise AuthenticationFailed(f"Redis at {redact(url)} refused the credentials: {exc}") from None
        raise BrokerUnavailable(f"Redis at {redact(url)} answered PING with an error: {exc}") from None
    except (ConnectionError, TimeoutError, OSError) as exc:  # MasterNotFoundError is a ConnectionError
        raise BrokerUnavailable(f"Redis at {redact(url)} is unreachable: {exc}") from None
    finally:
        probe.close()


# Replies that say "not now" rather than "no": a replica after a failover, a primary that lost
# its replicas (min-replicas-to-write), a Redis loading its data, a cluster moving slots.
UNAVAILABLE_REPLIES = ("READONLY", "MASTERDOWN", "LOADING", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN", "BUSY")


def unavailable_reply(exc: BaseException) -> bool:
    """True for an error reply that means Redis cannot serve writes for now."""
    return isinstance(exc, (ReadOnlyError, BusyLoadingError)) or (
        isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in UNAVAILABLE_REPLIES)


MIN_VERSION = (7, 0)


def check_version(url: str, version: str) -> None:
    """Raise BrokerError if Redis is older than 7.0 (our scripts' ``#!lua flags=allow-oom``
    header, which lets workers drain a full Redis, is a Redis 7 feature)."""
    try:
        found = tuple(int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return  # an unusual version string (a fork): let it try
    if found < MIN_VERSION:
        raise BrokerError(f"Redis at {redact(url)} is version {version}; brokerbench's BullMQ-style adapter "
                          f"needs Redis {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer (its scripts use the Redis 7 "
                          "'#!lua flags=' header)")


def guarded(url: str, action: Callable[[], T], what: str) -> T:
    """Run a Redis call, turning every redis-py error into the contract's: unreachable or not
    serving writes -> BrokerUnavailable; full -> PublishRejected; any other error reply (a script
    error) -> PublishRejected with Redis's words. Nothing raw reaches the caller."""
    try:
        return action()
    except AuthenticationError as exc:
        raise AuthenticationFailed(f"Redis at {redact(url)} refused the credentials: {exc}") from None
    except (ConnectionError, TimeoutError) as exc:
        raise BrokerUnavailable(f"{what}: Redis at {redact(url)} is unreachable: {exc}") from None
    except OutOfMemoryError as exc:
        raise PublishRejected(f"{what}: refused, Redis is full (maxmemory reached with noeviction): {exc}") from None
    except ResponseError as exc:
        if str(exc).startswith("OOM"):
            raise PublishRejected(f"{what}: Redis is out of memory (maxmemory reached with "
                                  f"noeviction): {exc}") from None
        if unavailable_reply(exc):
            raise BrokerUnavailable(f"{what}: Redis at {redact(url)} cannot take writes now: "
                                    f"{type(exc).__name__}: {exc}") from None
        raise PublishRejected(f"{what}: Redis refused it: {type(exc).__name__}: {exc}") from None
    except RedisError as exc:  # anything else redis-py may raise
        raise BrokerUnavailable(f"{what}: Redis at {redact(url)}: {exc!r}") from None


MISSED = object()  # what KeptConnection.run gives when the command must go the retried way

try:   # hiredis packs a command in C; redis-py's packer first runs its encoder on every argument
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _hiredis_pack = None


def _pack(connection: Any, command: tuple[Any, ...]) -> list[bytes]:
    """A command as RESP bytes, in the list ``send_packed_command`` takes. Its arguments are
    str, bytes or int (a script's keys and arguments)."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(command)]
    return connection.pack_command(*command)


class KeptConnection:
    """The one connection of a one-connection client (:func:`connect` with ``max_connections=1``),
    kept by one caller and used without redis-py's per-command pool bookkeeping (a lock taken
    twice, a check for unread data, events on release): a command is written and its reply
    read, nothing else. For the hot path of a producer, whose every add is one script call.

    It is never the only way: :meth:`run` gives :data:`MISSED` instead of retrying, and the
    caller then makes the same call through the client (redis-py's retries, a reconnect that asks
    Sentinel for the current primary, a script loaded again after a restart). A call that may
    be sent twice must carry its own idempotency (a call key). The errors of a missed attempt
    that may have reached Redis are noted in ``tried`` (:func:`attempts`), so an outage after it
    is still called in doubt. Not thread-safe: one caller."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._connection: Any = None
        self.refresh()

    def refresh(self) -> None:
        """Take the pool's connection again (after the client's retried way reconnected it);
        quietly nothing when Redis cannot be reached now (the next call goes the retried way)."""
        pool = self._client.connection_pool
        try:
            connection = pool.get_connection()
        except (RedisError, OSError):
            self._connection = None
            return
        pool.release(connection)   # it stays the pool's own: the retried way uses it too
        self._connection = connection

    def run(self, tried: "Attempts", *command: Any) -> Any:
        """The reply to ``command``, or MISSED when the connection is not open, the script is not
        loaded, or the connection failed (then closed; the error noted in ``tried``). An error
        reply other than NOSCRIPT is raised as redis-py raises it."""
        connection = self._connection
        if connection is None or getattr(connection, "_sock", None) is None:
            return MISSED
        try:
            connection.send_packed_command(_pack(connection, command))
            return connection.read_response()
        except NoScriptError:
            return MISSED
        except (ConnectionError, TimeoutError, OSError) as exc:
            connection.disconnect()
            tried.errors.append(exc)
            return MISSED
