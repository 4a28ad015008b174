"""BullMQ-style job queue on Redis: the adapter object that ties producer, worker and stats.

One brokerbench queue is one BullMQ queue per lane (``<queue>`` for the default lane,
``<queue>-<lane>`` for others), with BullMQ's key layout, so the official BullMQ clients
can read and write the same jobs (the interop tests show it).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import redis

from ..contract import (
    MAX_JOB_BYTES,
    Broker,
    Capabilities,
    CrashRedelivery,
    FailedJob,
    Feature,
    Handler,
    Hooks,
    QueueStats,
    Support,
)
from .connection import connect, guarded
from .driver import KIND
from .keys import PREFIX, QueueKeys, lane_queue_name
from .producer import RedisProducer
from .scripts import Scripts
from .worker import RedisWorker

CAPABILITIES = Capabilities(
    delivery=("at-least-once. A job is accepted once Redis ran addJobs.lua. A worker holds a job "
              "under a lock it renews; if the worker dies, the lock expires and the stalled check "
              "puts the job back in wait (at most max(lockDuration, 2 x stalledInterval) + "
              "stalledInterval after the crash: see CrashRedelivery), "
              "up to maxStalledCount times, then fails it."),
    ordering=("FIFO per lane for jobs without priority; those run before prioritized jobs, which "
              "run lowest number first and FIFO within a number. Stalled jobs go back to the head "
              "of wait (prioritized or not, as in BullMQ), retried jobs to the tail."),
    durability=("as durable as Redis is configured: nothing survives a restart without "
                "persistence; AOF everysec may lose about a second of accepted jobs; AOF always "
                "loses none that were acknowledged."),
    delay=Feature(Support.CLIENT, "delayed sorted set scored by due time; workers promote due "
                                  "jobs and sleep on the marker until the next due time"),
    priority=Feature(Support.CLIENT, "prioritized sorted set, score = priority * 2^32 + counter"),
    retries=Feature(Support.CLIENT, "attempts and backoff in the job's opts; a failed attempt "
                                    "goes back to wait, or to the delayed set for its backoff"),
    dead_letter=Feature(Support.CLIENT, "failed sorted set; the job hash keeps failedReason "
                                        "and stacktrace"),
    routing=Feature(Support.CLIENT, "the producer maps a job type to its lane's queue; "
                                    "Redis itself does no routing"),
    batching=Feature(Support.CLIENT, "moveToActive takes N jobs per call; moveToFinished settles "
                                     "a batch and takes the next ones in the same call"),
    redelivery_after_crash=Feature(Support.CLIENT, "lock expiry + stalled check"),
    stats=frozenset({"waiting", "active", "delayed", "completed", "failed"}),
    crash_redelivery=CrashRedelivery("lock-expiry", lock_option="lock_duration_ms",
                                     interval_option="stalled_interval_ms", default_lock_ms=30_000,
                                     default_interval_ms=30_000),
    repeated_id=Feature(Support.CLIENT, "a custom job id whose job hash exists is not added again: the "
                                        "existing job's id is returned and its data kept (BullMQ's rule, "
                                        "a 'duplicated' event); only while the job exists: once removed "
                                        "(remove_on_complete), the same id is added and runs again"),
)


class BullMQRedisBroker(Broker):
    """A BullMQ-style queue on Redis (see :data:`CAPABILITIES` for what it guarantees).

    :param url: ``redis://[:password@]host:port/db`` (or ``rediss://``).
    :param queue: the logical queue; each lane is the BullMQ queue ``<queue>`` or ``<queue>-<lane>``.
    :param routes: job type -> lane.
    :param connect_timeout: seconds to wait for Redis to answer when connecting.
    :param reconnect_for_s: how long commands on a dropped connection are retried.
    :param prefix: the key prefix (BullMQ's ``prefix``, default "bull"). On Redis Cluster use a
        hash tag, e.g. "{bull}", so that every key of a queue lives in one slot (BullMQ's advice).
    :param socket_timeout_s: how long one command may wait for its reply before it is retried.
    :param max_job_bytes: largest job data (JSON bytes) a producer sends; larger raises
        InvalidJob at once (default: the same 128 MiB as the AMQP adapter, RabbitMQ's default,
        so both accept the same jobs; None: no check).
    :param wait_replicas: 0 (BullMQ's way: a job is accepted once the primary ran the script),
        or N: a producer also waits until N replicas acknowledged each call (Redis ``WAIT``);
        see :class:`RedisProducer`.
    :param wait_timeout_ms: how long that WAIT may take before the call is refused.
    :param worker_defaults: options every :meth:`worker` gets unless it is given others
        (``lock_duration_ms``, ``stalled_interval_ms``... see :class:`RedisWorker`).
    """

    kind = KIND
    capabilities = CAPABILITIES
    worker_class = RedisWorker   # its keyword options are constructor options too (worker defaults)

    def __init__(self, url: str, queue: str = "brokerbench", routes: Mapping[str, str] | None = None,
                 *, connect_timeout: float = 3.0, reconnect_for_s: float = 30.0, prefix: str = PREFIX,
                 socket_timeout_s: float = 10.0, max_job_bytes: int | None = MAX_JOB_BYTES,
                 wait_replicas: int = 0, wait_timeout_ms: int = 1000, **worker_defaults: Any) -> None:
        super().__init__(queue, routes)
        if not prefix or ":" in prefix:
            raise ValueError(f"prefix must be non-empty and without ':', got {prefix!r}")
        self.url = url
        self.max_job_bytes = max_job_bytes
        if wait_replicas < 0 or wait_timeout_ms <= 0:
            raise ValueError("wait_replicas must be >= 0 and wait_timeout_ms > 0")
        self.wait_replicas, self.wait_timeout_ms = wait_replicas, wait_timeout_ms
        self._connect_options = {"connect_timeout": connect_timeout, "socket_timeout": socket_timeout_s,
                                 "reconnect_for": reconnect_for_s}
        self.client = connect(url, role="client", **self._connect_options)
        self.scripts = Scripts(self.client)
        self.lane_keys = {lane: QueueKeys(lane_queue_name(queue, lane), prefix) for lane in self.lanes}
        self.worker_defaults = {"reconnect_for_s": reconnect_for_s, **worker_defaults}

    def own_connection(self, role: str) -> "redis.Redis":
        """A client of one connection of its own (for WAIT, which counts that connection's writes)."""
        return connect(self.url, role=role, max_connections=1, **self._connect_options)

    def producer(self) -> RedisProducer:
        return RedisProducer(self)

    def worker(self, handlers: Mapping[str, Handler] | Handler, *, concurrency: int = 1,
               lanes: Sequence[str] | None = None, hooks: Sequence[Hooks] = (),
               **options: Any) -> RedisWorker:
        return RedisWorker(self, handlers, concurrency=concurrency, lanes=lanes, hooks=hooks,
                           **{**self.worker_defaults, **options})

    def stats(self) -> QueueStats:
        """Every lane's counts, summed. Complete: each job the queue holds sits in exactly one of
        these keys (the scripts move it from one to the next in one step):

        waiting   ``wait`` + ``prioritized`` + ``paused`` (where an older BullMQ parked waiting
                  jobs while paused; ours and BullMQ 5 keep them in ``wait``)
        active    ``active``: handed to a worker and not settled, including the jobs of a worker
                  that died, until the stalled check puts them back
        delayed   ``delayed``: delayed jobs, and failed attempts waiting for their backoff
        completed / failed: the finished jobs the sets keep (``remove_on_*``)

        One pipeline of reads, one command after another: a job moving between two of them
        during the call may be counted twice or, rarely, not at all; not one snapshot."""
        def read() -> list[Any]:
            # Not MULTI/EXEC: Redis refuses transactions when it is full, and stats matter most then.
            pipe = self.client.pipeline(transaction=False)
            for keys in self.lane_keys.values():
                pipe.llen(keys.wait).zcard(keys.prioritized).llen(keys.paused).llen(keys.active)
                pipe.zcard(keys.delayed).zcard(keys.completed).zcard(keys.failed)
            return pipe.execute()

        counts = guarded(self.url, read, "stats")
        total = QueueStats(0, 0, 0, 0, 0)
        for i in range(0, len(counts), 7):
            wait, prioritized, paused, active, delayed, completed, failed = counts[i:i + 7]
            total.waiting += wait + prioritized + paused  # type: ignore[operator]
            total.active += active  # type: ignore[operator]
            total.delayed += delayed  # type: ignore[operator]
            total.completed += completed  # type: ignore[operator]
            total.failed += failed  # type: ignore[operator]
        return total

    def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        out = []
        for lane, keys in self.lane_keys.items():
            for raw_id in self.client.zrange(keys.failed, 0, limit - 1):
                job = self.job_hash(raw_id.decode(), lane)
                try:
                    data = json.loads(job.get("data", "null"))
                except ValueError:
                    data = job.get("data")
                out.append(FailedJob(raw_id.decode(), job.get("name", ""), job.get("failedReason", ""),
                                     int(job.get("atm", 0) or 0), data))
        return out[:limit]

    def purge(self) -> None:
        """Delete every key of every lane's queue (SCAN + UNLINK). Run it with no worker active."""
        def wipe() -> None:
            for keys in self.lane_keys.values():
                batch: list[bytes] = []
                for key in self.client.scan_iter(match=keys.base + "*", count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        self.client.unlink(*batch)
                        batch = []
                if batch:
                    self.client.unlink(*batch)

        guarded(self.url, wipe, "purge")

    def job_hash(self, job_id: str, lane: str = "default") -> dict[str, str]:
        """A job's hash as text (for tests and teaching)."""
        raw = self.client.hgetall(self.lane_keys[lane].job(job_id))
        return {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": self.kind, "queue": self.queue, "lanes": self.lanes}
        try:
            server = self.client.info("server")
            info["version"] = server.get("redis_version")
            persistence = self.client.info("persistence")
            info["aof_enabled"] = bool(persistence.get("aof_enabled"))
            try:
                config = self.client.config_get("appendfsync")
                config.update(self.client.config_get("maxmemory-policy"))
                config.update(self.client.config_get("save"))
                info["config"] = config
            except Exception:  # noqa: BLE001 - CONFIG is often disabled on managed Redis
                info["config"] = "unavailable (CONFIG disabled)"
        except Exception as exc:  # noqa: BLE001 - description is best effort
            info["error"] = str(exc)
        return info

    def close(self) -> None:
        self.client.close()
