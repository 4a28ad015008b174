"""The live view's load: one producer process and N consumer processes per broker.

Each process reports to the server over its own one-way pipe, one JSON object per message
(never pickle), so a consumer killed with SIGKILL breaks only its own pipe. A consumer reports
every run the moment its handler returns, before the job is acknowledged: a job whose run was
reported but not acknowledged when its worker died runs again and shows as a duplicate, which
is what happened.

Messages: producer ``{"e": "acc", "ids": [...], "t": s}`` (accepted), ``{"e": "ref", "n": k,
"why": text}`` (refused), ``{"e": "err", "why": text}`` (broker unreachable, retrying);
consumer ``{"e": "ran", "id", "name", "a" (attempts before), "r" (redelivered), "lat" (ms from
send, or from due time for a delayed job), "ok", "t"}`` and ``{"e": "dead", "id"}``.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from brokers import registry
from brokers.contract import BrokerUnavailable, Hooks, Job, JobOptions, Outcome, PublishRejected

from ..harness.workloads import PROFILES, PayloadBank, ServiceModel, perform

POISON = "poison_job"        # its handler always fails: retries, then the dead-letter queue
QUEUE = "bb-live"            # the queue name's start; each lab adds its own suffix


@dataclass(frozen=True)
class LoadSettings:
    """What the class asked for: the same on both brokers."""

    rate: float = 100.0           # jobs/s offered, open loop
    profile: str = "mix"          # job-type mix (benchmarks.harness.workloads.PROFILES)
    consumers: int = 2            # worker processes per broker
    concurrency: int = 4          # jobs at once per worker (Redis concurrency / AMQP prefetch)
    lock_s: float = 5.0           # Redis lock duration, and stalled check as often; BullMQ's defaults: 30 and 30
    time_scale: float = 0.1       # heavy jobs take 1-3 s x this (0.1: 100-300 ms, so a killed worker holds some)

    def validated(self) -> "LoadSettings":
        problems = []
        if not 1 <= self.rate <= 2000:
            problems.append("rate must be 1-2000 jobs/s")
        if self.profile not in PROFILES:
            problems.append(f"profile must be one of {', '.join(PROFILES)}")
        if not 1 <= self.consumers <= 8:
            problems.append("consumers must be 1-8")
        if not 1 <= self.concurrency <= 64:
            problems.append("concurrency must be 1-64")
        if not 0.5 <= self.lock_s <= 60:
            problems.append("lock_s must be 0.5-60")
        if not 0.001 <= self.time_scale <= 1:
            problems.append("time_scale must be 0.001-1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def broker_options(kind: str, settings: LoadSettings, profile_options: dict[str, Any]) -> dict[str, Any]:
    """Adapter options for the live view: the durability profile's, priorities on, and the Redis
    lock the class chose (ignored by adapters without locks)."""
    driver = registry.get(kind)
    priorities = {} if profile_options.get("queue_type") == "quorum" else dict(driver.priority_options)
    options = {"reconnect_for_s": 30.0, **priorities, **profile_options}   # quorum queues have no priorities
    if driver.recovery_settings and "lock_duration_ms" in driver.recovery_settings[0].options:
        # The stalled check as often as the lock lasts: with a 30 s lock, BullMQ's defaults exactly.
        lock_ms = int(settings.lock_s * 1000)
        options.update(lock_duration_ms=lock_ms, stalled_interval_ms=lock_ms)
    return options


def _send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message, separators=(",", ":")).encode())


def _quiet() -> None:
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it stops us itself


def producer_main(conn: Connection, kind: str, url: str, queue: str, options: dict[str, Any],
                  settings: dict[str, Any], seed: int = 1) -> None:
    """Publish the mix at the set rate until the pipe closes or the process is stopped."""
    _quiet()
    load = LoadSettings(**settings)
    rng = random.Random(seed)
    bank = PayloadBank(seed, ServiceModel(time_scale=load.time_scale))
    weights = PROFILES[load.profile]
    types, cumulative = list(weights), []
    total = 0.0
    for t in types:
        total += weights[t]
        cumulative.append(total)
    broker = registry.get(kind).open(url, queue=queue, **options)
    producer = broker.producer()
    pending: list[str] = []
    producer.on_accepted = pending.extend   # accepted = replied, or confirmed (windowed confirms)
    interval, n = 1.0 / load.rate, 0
    next_at = time.monotonic()
    last_report = time.monotonic()
    while True:
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(next_at - now, 0.05))
            continue
        next_at += interval
        if now - next_at > 2.0:          # fell far behind (a broker outage): do not burst to catch up
            next_at = now
        pick = rng.random() * total
        job_type = types[next(i for i, c in enumerate(cumulative) if pick <= c)]
        data = dict(bank.payload(job_type, n), sent_at=time.time())
        n += 1
        try:
            # Our own ids: a broker restarted empty starts its counter again, and a reused id
            # would hide a lost job behind a new one.
            producer.publish(job_type, data, JobOptions(job_id=f"j{uuid.uuid4().hex[:16]}"))
        except PublishRejected as exc:   # its job_ids were never accepted: refused, not waiting to run
            _send(conn, {"e": "ref", "n": len(exc.job_ids) or 1, "why": str(exc)[:200]})
        except BrokerUnavailable as exc:
            _send(conn, {"e": "err", "why": str(exc)[:200]})
            time.sleep(0.5)
        if pending and time.monotonic() - last_report > 0.1:
            _send(conn, {"e": "acc", "ids": pending, "t": time.time()})
            pending, last_report = [], time.monotonic()


class _Settled(Hooks):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def job_settled(self, job: Job, outcome: Outcome, detail: str | None) -> None:
        if outcome is Outcome.FAILED:
            try:
                _send(self.conn, {"e": "dead", "id": job.id, "name": job.name})
            except OSError:
                pass


def consumer_main(conn: Connection, kind: str, url: str, queue: str, options: dict[str, Any],
                  concurrency: int) -> None:
    """Run jobs until stopped (SIGTERM) or killed, reporting each run at once."""
    _quiet()
    driver = registry.get(kind)
    broker = driver.open(url, queue=queue, **options)

    def handle(job: Job) -> Any:
        data = job.data if isinstance(job.data, dict) else {}
        ok = job.name != POISON
        result = perform(job.name, data) if ok else None
        now = time.time()
        start = data.get("due_at") or data.get("sent_at") or now
        try:
            _send(conn, {"e": "ran", "id": job.id, "name": job.name, "a": job.attempts_made, "r": job.redelivered,
                         "lat": round((now - start) * 1000, 2), "ok": ok, "t": now})
        except OSError:   # the lab is gone: the job itself still ran
            pass
        if not ok:
            raise RuntimeError("poison job: this handler always fails")
        return result

    worker = broker.worker(handle, concurrency=concurrency, hooks=[_Settled(conn)],
                           **driver.worker_options(concurrency, concurrency))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.run()
