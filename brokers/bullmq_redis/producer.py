"""Publishing BullMQ jobs: one Lua call (addJobs.lua) adds a whole batch atomically."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..contract import (
    DEFAULT_LANE,
    InvalidJob,
    JobOptions,
    JobSpec,
    Producer,
    PublishRejected,
    check_job_name,
    encode_data,
)
from .codec import opts_json
from .connection import guarded
from .keys import RESERVED_IDS
from .scripts import Calls

if TYPE_CHECKING:
    from .broker import BullMQRedisBroker

BATCH = 500  # jobs per script call: bounded so one call never blocks Redis for long
BATCH_BYTES = 64 * 1024 * 1024  # and bytes per call: far below Redis's 1 GB query buffer limit


def _chunks(items: list[tuple[int, list[Any]]]) -> Iterator[list[tuple[int, list[Any]]]]:
    """Script calls of at most BATCH jobs and BATCH_BYTES of data (a bigger job goes alone)."""
    chunk: list[tuple[int, list[Any]]] = []
    size = 0
    for item in items:
        length = len(item[1][2])
        if chunk and (len(chunk) >= BATCH or size + length > BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


class RedisProducer(Producer):
    """Adds jobs the way BullMQ's Queue.add/addBulk does; ``publish`` returns after Redis ran
    the script, so an accepted job is in Redis memory (on disk only as far as Redis's AOF
    settings take it). Each script call carries a call key, so the automatic retry after a
    lost reply adds nothing twice. Not thread-safe: one producer per thread.

    With the broker's ``wait_replicas`` = N > 0, each script call is followed by ``WAIT N
    timeout`` on the same connection, and a job counts as accepted only once N replicas
    acknowledged it (Redis replication is asynchronous: without WAIT, a job the primary accepted
    is lost if the primary dies before a replica copied it, and Sentinel promotes that replica).
    BullMQ itself never calls WAIT. A call whose WAIT saw fewer than N replicas, or lost its
    connection, raises PublishRejected with that call's ids in ``job_ids``: the jobs are on the
    primary and may still run, but were not confirmed on N replicas; the caller decides whether
    to send them again (at-least-once: a resend may run twice). WAIT is never retried on a new
    connection, where it would wait for nothing. One gap remains: a call whose reply was lost
    and that the retry finds already done (its call key) wrote nothing on the new connection, so
    its WAIT returns at once; such a call's jobs count as accepted on the primary's word.

    :param broker: the adapter (its client, scripts, lanes and ``wait_replicas``); batches of up
        to ``BATCH`` jobs per script call.
    """

    def __init__(self, broker: "BullMQRedisBroker") -> None:
        self._broker = broker
        self._calls = Calls(f"p-{uuid.uuid4().hex[:10]}")
        self._wait = broker.wait_replicas
        self._client = broker.own_connection("producer-wait") if self._wait else None

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str:
        if options is not None and not isinstance(options, JobOptions):
            raise InvalidJob(f"options must be JobOptions, got {type(options).__name__}")
        return self.publish_many([JobSpec(name, data, options or JobOptions())])[0]

    def _encode(self, spec: JobSpec) -> list[Any]:
        """The six addJobs.lua arguments of one job, every check passed."""
        if not isinstance(spec, JobSpec):
            raise InvalidJob(f"publish_many takes JobSpec items, got {type(spec).__name__}")
        check_job_name(spec.name)
        o = spec.options
        if o.job_id in RESERVED_IDS:
            raise InvalidJob(f"job_id {o.job_id!r} is the name of one of the queue's own keys "
                             f"(bull:<queue>:{o.job_id}); choose another")
        return [o.job_id or "", spec.name, encode_data(spec.data, self._broker.max_job_bytes), opts_json(o),
                o.delay_ms, o.priority]

    def publish_many(self, jobs: Iterable[JobSpec]) -> list[str]:
        broker = self._broker
        by_lane: dict[str, list[tuple[int, list[Any]]]] = {}
        count = 0
        for index, spec in enumerate(jobs):  # every job is checked before anything is sent
            by_lane.setdefault(broker.lane_for(spec.name), []).append((index, self._encode(spec)))
            count = index + 1
        ids: list[str | None] = [None] * count
        shared_id = broker.lane_keys[DEFAULT_LANE].id
        for lane, items in by_lane.items():
            keys = broker.lane_keys[lane]
            for chunk in _chunks(items):
                args: list[Any] = [len(chunk)]
                for _, job_args in chunk:
                    args += job_args
                now = int(time.time() * 1000)
                call = self._calls.new(keys)
                try:
                    result = guarded(broker.url, partial(broker.scripts.call, "addJobs", keys, now, args,
                                                         self._client, call=call, shared_id=shared_id), "publish")
                except PublishRejected as exc:  # this chunk and the ones after it were refused
                    raise PublishRejected(str(exc), [], ids) from None
                self._calls.answered(call)
                accepted = [job_id.decode() for job_id in result]
                if self._wait:
                    self._wait_for_replicas(accepted, ids)
                for (index, _), job_id in zip(chunk, accepted):
                    ids[index] = job_id
                self._accepted(accepted)
        return ids  # type: ignore[return-value]  # every entry is set once every chunk went through

    def _wait_for_replicas(self, accepted: list[str], ids: list[str | None]) -> None:
        """WAIT on the connection that ran the script (no retry: see the class docstring)."""
        assert self._client is not None
        wait_ms = self._broker.wait_timeout_ms
        pool = self._client.connection_pool  # of one connection: the one the script ran on
        connection = pool.get_connection()
        try:
            connection.send_command("WAIT", self._wait, wait_ms)
            replicas = int(connection.read_response())
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            connection.disconnect()
            raise PublishRejected(f"publish: {len(accepted)} jobs reached the primary but the connection was lost "
                                  f"before {self._wait} replica(s) confirmed them ({exc}); they may run, or be "
                                  "lost at a failover", accepted, ids) from None
        finally:
            pool.release(connection)
        if replicas < self._wait:
            raise PublishRejected(f"publish: only {replicas} of {self._wait} replica(s) confirmed {len(accepted)} "
                                  f"jobs within {wait_ms} ms; they are on the primary and may run, or be lost at "
                                  "a failover", accepted, ids)

    def close(self) -> None:
        """Closes the WAIT connection, if any; otherwise the producer shares the broker's pool."""
        if self._client is not None:
            self._client.close()
