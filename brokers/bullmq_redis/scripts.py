"""Load the queue's Lua scripts (``lua/*.lua``) and call them with the right keys.

A script may say ``-- @include NAME`` on a line of its own; that line is replaced by
``lua/include/NAME.lua``, so shared functions are written once (BullMQ does the same at
build time). Scripts are sent with EVALSHA; redis-py loads them again after a server restart.

Every script except addJobs starts with ``#!lua flags=allow-oom``. When Redis is full
(maxmemory with noeviction), Redis refuses write commands; a script refused halfway would leave
a job half-moved (out of ``active``, in no other list: lost). With the flag, workers still take,
finish and (with removeOnComplete) free jobs while the producer's addJobs is refused with a clear
error: the full queue pushes back on producers and drains, and nothing accepted is lost.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import redis

from .keys import QueueKeys

SCRIPT_NAMES = ("addJobs", "moveToActive", "moveToFinished", "extendLocks", "moveStalledJobsToWait")
_INCLUDE = re.compile(r"^-- @include (\w+)\s*$", re.MULTILINE)


def _read(path: str) -> str:
    return resources.files(__package__).joinpath("lua", path).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """The full text of a script, includes pasted in."""
    return _INCLUDE.sub(lambda m: _read(f"include/{m.group(1)}.lua"), _read(f"{name}.lua"))


def queue_keys(keys: QueueKeys) -> list[str]:
    """The 14 KEYS every script receives, in the order include/queue.lua names them (a new
    list each time: callers append to it)."""
    return list(_queue_keys(keys))


@lru_cache(maxsize=256)
def _queue_keys(keys: QueueKeys) -> tuple[str, ...]:   # one lane's names, made once (a producer's hot path)
    return (keys.wait, keys.active, keys.prioritized, keys.pc, keys.delayed, keys.completed,
            keys.failed, keys.stalled, keys.meta, keys.events, keys.marker, keys.id,
            keys.stalled_check, keys.paused)


class Calls:
    """Call keys of one client (a producer, a worker): each call of a script that may be sent
    twice gets a key of its own, and names the previous one, whose reply arrived, to forget."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self._n = itertools.count(1)
        self._done: str | None = None

    def new(self, keys: QueueKeys) -> "Call":
        return Call(keys.call(f"{self.client_id}:{next(self._n)}"), self._done)

    def answered(self, call: "Call") -> None:
        self._done = call.key


@dataclass(frozen=True)
class Call:
    key: str
    forget: str | None


class Scripts:
    """The registered scripts of one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def call(self, name: str, keys: QueueKeys, now_ms: int, args: Sequence[Any],
             client: redis.Redis | None = None, *, call: Call | None = None, shared_id: str | None = None) -> Any:
        """Run script ``name`` on a lane. With ``call``, the script answers a second run of the
        same call from what the first did (so redis-py's retry after a lost reply is safe)."""
        all_keys, argv = self._arguments(keys, now_ms, args, call, shared_id)
        return self._scripts[name](keys=all_keys, args=argv, client=client)

    def command(self, name: str, keys: QueueKeys, now_ms: int, args: Sequence[Any], *,
                call: Call | None = None, shared_id: str | None = None) -> tuple[Any, ...]:
        """The EVALSHA command that :meth:`call` would send, for a caller that writes it on a
        connection of its own (a NOSCRIPT reply then means: go through :meth:`call`)."""
        all_keys, argv = self._arguments(keys, now_ms, args, call, shared_id)
        return ("EVALSHA", self._scripts[name].sha, len(all_keys), *all_keys, *argv)

    @staticmethod
    def _arguments(keys: QueueKeys, now_ms: int, args: Sequence[Any], call: Call | None,
                   shared_id: str | None) -> tuple[list[str], list[Any]]:
        """A script's KEYS (the queue's, then the call's keys and the shared id counter, when
        the call has a key) and ARGV (the key base, the time, then ``args``)."""
        all_keys = queue_keys(keys)
        if call is not None:
            all_keys += [call.key, call.forget or call.key]
            if shared_id is not None:
                all_keys.append(shared_id)
        return all_keys, [keys.base, now_ms, *args]
