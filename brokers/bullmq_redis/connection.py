"""Redis connections for the adapter: a clear error when Redis is down, reconnects when it drops.

Each command that fails on a broken connection is retried on a fresh one with exponential
backoff for about ``reconnect_for`` seconds (redis-py's Retry), so a killed client connection
or a broker restart is survived. A Lua script whose reply was lost is then sent again, the same
call: the scripts that must not act twice (addJobs, moveToActive, moveToFinished) carry a call
key and answer a second run from what the first did (lua/include/queue.lua), so a retried
addJobs adds nothing twice and a retried settle neither counts a settled job as lost nor strands
the jobs the lost reply handed out.

The version is checked at connect: the scripts use Redis 7's ``#!lua flags=`` header.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)
from redis.retry import Retry

from ..contract import AuthenticationFailed, BrokerError, BrokerUnavailable, PublishRejected
from ..urls import redact

T = TypeVar("T")


def _retry(reconnect_for: float) -> Retry:
    """Retries spaced 0.05, 0.1, 0.2 ... s (capped at 1 s), as many as fit in ``reconnect_for``."""
    retries, waited, step = 0, 0.0, 0.05
    while waited < reconnect_for:
        waited += step
        step = min(step * 2, 1.0)
        retries += 1
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), max(retries, 1))


def connect(url: str, *, role: str, connect_timeout: float = 3.0, socket_timeout: float | None = 10.0,
            reconnect_for: float = 20.0) -> redis.Redis:
    """A client for ``url``, checked with PING; raises BrokerUnavailable/AuthenticationFailed."""
    check(url, connect_timeout)
    return redis.Redis.from_url(
        url,
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
    probe = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                 retry=Retry(ExponentialBackoff(), 0))
    try:
        probe.ping()
        check_version(url, probe.info("server").get("redis_version", "0"))
    except AuthenticationError as exc:
        raise AuthenticationFailed(f"Redis at {redact(url)} refused the credentials: {exc}") from None
    except ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise AuthenticationFailed(f"Redis at {redact(url)} refused the credentials: {exc}") from None
        raise BrokerUnavailable(f"Redis at {redact(url)} answered PING with an error: {exc}") from None
    except (ConnectionError, TimeoutError, OSError) as exc:
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
