"""Publishing BullMQ jobs: one Lua call (addJobs.lua) adds a whole batch atomically."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..contract import (
    DEFAULT_LANE,
    BrokerUnavailable,
    Fate,
    InvalidJob,
    JobOptions,
    JobSpec,
    Producer,
    PublishFailed,
    PublishInDoubt,
    PublishRejected,
    UnavailableInDoubt,
    check_job_name,
    encode_data,
)
from .codec import opts_json
from .connection import MISSED, Attempts, KeptConnection, attempts, guarded
from .keys import RESERVED_IDS, QueueKeys
from .scripts import Call, Calls

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


def _socket_of(pool: Any) -> Any:
    """The socket of a one-connection pool's connection (None if it has none): the same socket
    before and after a call means the connection was not opened anew in between."""
    for connection in [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]:
        return getattr(connection, "_sock", None)
    return None


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
    connection, raises PublishInDoubt with that call's ids in ``in_doubt``: the jobs are on the
    primary and may still run, or be lost at a failover; they were not refused. A resend with
    the same custom job id adds nothing while the job exists. WAIT is never retried on a new
    connection, where it would wait for nothing. One gap remains: a call whose reply was lost
    and that the retry finds already done (its call key) wrote nothing on the new connection, so
    its WAIT returns at once; such a call's jobs count as accepted on the primary's word.

    A call whose connection failed for good (after ``reconnect_for``) raises UnavailableInDoubt
    when an attempt may have reached Redis (a reply lost after the script was written), and a
    plain BrokerUnavailable when none can have (no connection was ever made).

    :param broker: the adapter (its client, scripts, lanes and ``wait_replicas``); batches of up
        to ``BATCH`` jobs per script call.
    """

    def __init__(self, broker: "BullMQRedisBroker") -> None:
        self._broker = broker
        self._calls = Calls(f"p-{uuid.uuid4().hex[:10]}")
        self._wait = broker.wait_replicas
        # A connection of its own, kept (WAIT counts that connection's writes; each add is then
        # one EVALSHA written and read, with the client's retried way behind it).
        self._client = broker.own_connection("producer-wait" if self._wait else "producer")
        self._kept = KeptConnection(self._client)

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
            job_args = self._encode(spec)
            by_lane.setdefault(broker.lane_for(spec.name), []).append((index, job_args))
            count = index + 1
        ids: list[str | None] = [None] * count
        fates = [Fate.REFUSED] * count  # until a chunk is sent: what is never sent is not held
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
                    with attempts() as tried:
                        result = guarded(broker.url, partial(self._add, keys, now, args, call, shared_id, tried),
                                         "publish")
                except PublishRejected as exc:  # Redis said no: this chunk and the ones after it are refused
                    raise PublishRejected(str(exc), [], ids, fates=fates) from None
                except BrokerUnavailable as exc:  # guarded() keeps redis-py's own error as the context
                    self._unanswered(exc, chunk, ids, fates, tried.may_have_sent(exc.__context__))
                self._calls.answered(call)
                accepted = [job_id.decode() for job_id in result]
                if self._wait:
                    self._wait_for_replicas(chunk, accepted, ids, fates)
                for (index, _), job_id in zip(chunk, accepted):
                    ids[index], fates[index] = job_id, Fate.ACCEPTED
                self._accepted(accepted)
        return ids  # type: ignore[return-value]  # every entry is set once every chunk went through

    def _add(self, keys: QueueKeys, now: int, args: list[Any], call: Call, shared_id: str, tried: Attempts) -> Any:
        """One addJobs call: on the kept connection, else (not open, a script to load again, a
        connection lost: :class:`~.connection.KeptConnection`) the same call, with the same call
        key, through the client's retried way."""
        scripts = self._broker.scripts
        reply = self._kept.run(tried, *scripts.command("addJobs", keys, now, args, call=call, shared_id=shared_id))
        if reply is not MISSED:
            return reply
        reply = scripts.call("addJobs", keys, now, args, self._client, call=call, shared_id=shared_id)
        self._kept.refresh()   # the retried way (re)opened the connection: keep it again
        return reply

    @staticmethod
    def _unanswered(exc: BrokerUnavailable, chunk: list[tuple[int, list[Any]]], ids: list[str | None],
                    fates: list[Fate], maybe_sent: bool) -> None:
        """Redis became unreachable during a chunk's call. If an attempt may have delivered the
        call, its jobs are in doubt (the script may have run and its reply been lost); if none
        can have, they are not held, and with nothing of the call accepted this is a plain
        outage. Always raises."""
        if not maybe_sent and Fate.ACCEPTED not in fates:
            raise exc
        if not maybe_sent:
            raise PublishFailed.make(f"{exc} (this part of the call was never sent; the jobs before it were "
                                     "accepted)", [], ids, fates=fates, unavailable=True) from None
        custom = []
        for index, job_args in chunk:
            fates[index] = Fate.IN_DOUBT
            if job_args[0]:
                custom.append(job_args[0])
        raise UnavailableInDoubt(f"{exc}; {len(chunk)} job(s) were sent and no reply came back: Redis may hold "
                                 "them (in doubt: resend with the same custom job_id to add nothing twice)",
                                 [], ids, in_doubt=custom, fates=fates) from None

    def _wait_for_replicas(self, chunk: list[tuple[int, list[Any]]], accepted: list[str], ids: list[str | None],
                           fates: list[Fate]) -> None:
        """WAIT on the connection that ran the script (no retry: see the class docstring). Short
        of the replicas asked for, the chunk's jobs are in doubt: on the primary, maybe lost at a
        failover."""
        wait_ms = self._broker.wait_timeout_ms
        pool = self._client.connection_pool  # of one connection: the one the script ran on
        socket_before = _socket_of(pool)
        why, connection = "", None
        try:
            connection = pool.get_connection()  # may reconnect: then WAIT would count nothing of ours
            if socket_before is None or getattr(connection, "_sock", None) is not socket_before:
                raise RedisConnectionError("the connection the script ran on was lost and opened anew")
            connection.send_command("WAIT", self._wait, wait_ms)
            replicas = int(connection.read_response())
        except (RedisError, OSError, ValueError) as exc:  # lost, or an error reply (WAIT on a demoted primary)
            if connection is not None:
                connection.disconnect()
            replicas = -1
            why = (f"publish: {len(accepted)} jobs reached the primary but {self._wait} replica(s) could not be "
                   f"asked to confirm them ({type(exc).__name__}: {exc})")
        finally:
            if connection is not None:
                pool.release(connection)
        if 0 <= replicas < self._wait:
            why = (f"publish: only {replicas} of {self._wait} replica(s) confirmed {len(accepted)} jobs within "
                   f"{wait_ms} ms")
        if why:
            for (index, _), job_id in zip(chunk, accepted):
                ids[index], fates[index] = job_id, Fate.IN_DOUBT
            raise PublishInDoubt(why + "; they are on the primary and may run, or be lost at a failover (in doubt, "
                                 "not refused: a resend with the same custom job_id adds nothing twice)",
                                 [], ids, in_doubt=accepted, fates=fates)

    def close(self) -> None:
        """Closes the producer's connection."""
        self._client.close()
