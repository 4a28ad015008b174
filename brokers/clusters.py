"""Replicated brokers of our own on one machine: what every kind's shares.

Each kind's replicated broker lives with its adapter: a Redis primary with replicas watched by
Sentinels (:mod:`brokers.bullmq_redis.sentinel`), a 3-node RabbitMQ cluster
(:mod:`brokers.amqp.cluster`). Loopback (or a network namespace of our own), free ports,
temporary folders, torn down at exit, like the single private instances of
:mod:`brokers.instances`. Each offers what the replication scenario uses: ``start()``, ``url``,
``leader(queue)``, ``follower(queue)``, ``name(node)``, ``wait_for_failover(node, queue)``,
``heal()``, ``describe()``, ``cleanup()``, and for a real partition ``can_partition()``,
``partition(node)``, ``unpartition()``.

What they take here (RSS, measured idle): each RabbitMQ node about 110-150 MB (three: about
0.4 GB); each redis-server (data node or Sentinel) 3-10 MB plus its data.

Failover settings are short so a scenario sees a whole failover in seconds: Sentinel marks the
primary down after ``down_after_ms`` (1 s) and promotes a replica (quorum 2 of 3 Sentinels);
RabbitMQ's quorum queues elect a new leader on their own (Raft), in a few seconds.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Callable

from .instances import LocalInstance, NotOurProcess, signal_ours


class ClusterError(RuntimeError):
    """A node of a private cluster did not come up; the message names it and its log."""


def until(check: Callable[[], bool], timeout: float, what: str, log: Path | str) -> float:
    """Wait until ``check()`` is true; seconds it took. ClusterError naming ``log`` if never."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.1)
    raise ClusterError(f"{what} within {timeout:.0f} s; read {log}")


def pause(target: "LocalInstance | int | None") -> None:
    """SIGSTOP: the process holds its sockets but answers nothing (to its peers, a partition).

    ``target``: a node, or a pid; either way the signal goes only to a process one of our
    private instances owns (:func:`brokers.instances.signal_ours`): a pid read from a file the
    broker's user can write is checked first. NotOurProcess (nothing sent) otherwise."""
    _signal(target, signal.SIGSTOP)


def resume(target: "LocalInstance | int | None") -> None:
    """SIGCONT, checked like :func:`pause`."""
    _signal(target, signal.SIGCONT)


def resume_quietly(target: "LocalInstance | int | None") -> None:
    """:func:`resume` for clean-up: a process that is gone (or no longer ours) is left alone."""
    try:
        resume(target)
    except (ProcessLookupError, NotOurProcess):
        pass


def _signal(target: "LocalInstance | int | None", sig: int) -> None:
    if isinstance(target, LocalInstance):
        target.signal(sig)
    else:
        signal_ours(target, sig)
