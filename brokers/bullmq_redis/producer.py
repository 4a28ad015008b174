"""Publishing BullMQ jobs: one Lua call (addJobs.lua) adds a whole batch atomically."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable

from ..contract import JobOptions, JobSpec, Producer, check_job_name, encode_data
from .codec import opts_json
from .connection import guarded

if TYPE_CHECKING:
    from .broker import BullMQRedisBroker

BATCH = 500  # jobs per script call: bounded so one call never blocks Redis for long


class RedisProducer(Producer):
    """Adds jobs the way BullMQ's Queue.add/addBulk does; ``publish`` returns after Redis ran
    the script, so an accepted job is in Redis memory (on disk only as far as Redis's AOF
    settings take it). Thread-safe, since redis-py's client is.

    :param broker: the adapter (its client, scripts and lanes); the producer has no options of
        its own: batches of up to ``BATCH`` jobs per script call.
    """

    def __init__(self, broker: "BullMQRedisBroker") -> None:
        self._broker = broker

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str:
        return self.publish_many([JobSpec(name, data, options or JobOptions())])[0]

    def publish_many(self, jobs: Iterable[JobSpec]) -> list[str]:
        broker = self._broker
        by_lane: dict[str, list[tuple[int, JobSpec]]] = {}
        count = 0
        for index, spec in enumerate(jobs):
            check_job_name(spec.name)
            by_lane.setdefault(broker.lane_for(spec.name), []).append((index, spec))
            count = index + 1
        ids: list[str] = [""] * count
        for lane, items in by_lane.items():
            keys = broker.lane_keys[lane]
            for start in range(0, len(items), BATCH):
                chunk = items[start:start + BATCH]
                args: list[Any] = [len(chunk)]
                for _, spec in chunk:
                    o = spec.options
                    args += [o.job_id or "", spec.name, encode_data(spec.data),
                             opts_json(o), o.delay_ms, o.priority]
                now = int(time.time() * 1000)
                result = guarded(broker.url, partial(broker.scripts.call, "addJobs", keys, now, args),
                                 "publish")
                accepted = [job_id.decode() for job_id in result]
                for (index, _), job_id in zip(chunk, accepted):
                    ids[index] = job_id
                self._accepted(accepted)
        return ids

    def close(self) -> None:
        """Nothing to release: the producer shares the broker's connection pool."""
