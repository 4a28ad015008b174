"""Redis connections for the adapter: a clear error when Redis is down, reconnects when it drops.

Each command that fails on a broken connection is retried on a fresh one with exponential
backoff for about ``reconnect_for`` seconds (redis-py's Retry), so a killed client connection
or a broker restart is survived. A Lua script whose reply was lost is run again, with these
effects: addJobs adds the job a second time (a duplicate, never a loss; a custom job id
prevents it), moveToFinished finds the jobs already settled and says so, and moveToActive
leaves the jobs of the lost reply locked by no running worker, so the stalled check hands
them out again after the lock expires.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    OutOfMemoryError,
    ResponseError,
    TimeoutError,
)
from redis.retry import Retry

from ..contract import AuthenticationFailed, BrokerUnavailable, PublishRejected
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


def guarded(url: str, action: Callable[[], T], what: str) -> T:
    """Run a Redis call, turning redis-py's errors into the contract's."""
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
        raise
