"""The live view's load: one producer process and N consumer processes per broker.

Each process reports to the server over its own one-way pipe, one JSON object per message
(never pickle), so a consumer killed with SIGKILL breaks only its own pipe. A consumer reports
every run the moment its handler returns, before the job is acknowledged: a job whose run was
reported but not acknowledged when its worker died runs again and shows as a duplicate, which
is what happened.

Every job the producer offers ends in one of the contract's outcomes (:class:`brokers.contract.Fate`),
and each is reported apart:

* ``{"e": "acc", "ids": [...], "t": s}``: accepted (the broker replied, or confirmed). Every
  accepted id is reported exactly once, at most ``REPORT_S`` after ``on_accepted`` named it, and
  the rest when the producer is stopped with SIGTERM (it flushes its confirms first).
* ``{"e": "ref", "n": k, "why": text}``: refused, certainly not held (a negative confirm, a full
  broker, a closed channel). Never accepted, so nothing is removed anywhere for it.
* ``{"e": "doubt", "n": k, "ids": [...], "why": text}``: in doubt (PublishInDoubt: a confirm
  timeout, a WAIT short of replicas, a connection lost before the reply): the broker may hold
  them and they may still run, once, or never. Neither accepted nor refused, never lost.
* ``{"e": "err", "n": k, "why": text}``: the broker was unreachable (BrokerUnavailable) and the
  ``k`` jobs of that call were never sent (certainly not held); the producer pauses and goes on.
  Jobs offered while it is behind by more than 2 s are skipped, not sent and not counted.

Consumer: ``{"e": "ran", "id", "name", "a" (attempts before), "r" (redelivered), "lat" (ms from
send, or from due time for a delayed job), "ok", "t"}`` and ``{"e": "dead", "id"}``.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Callable

from brokers import registry
from brokers.contract import (
    BrokerUnavailable,
    Fate,
    Hooks,
    Job,
    JobOptions,
    Outcome,
    Producer,
    PublishFailed,
    PublishInDoubt,
)

from ..harness.workloads import CPU_SHARE, PROFILES, PayloadBank, ServiceModel, perform

POISON = "poison_job"        # its handler always fails: retries, then the dead-letter queue
QUEUE = "bb-live"            # the queue name's start; each lab adds its own suffix
REPORT_S = 0.1              # the producer reports its acceptances at most this often
WHY_CHARS = 200
OPEN_FOR_S = 60.0           # a load process waits this long for its broker to answer at start


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


def _open(kind: str, url: str, queue: str, options: dict[str, Any], client: str = "", role: str = "producer") -> Any:
    """The adapter (or, with ``client``, a contender's role behind the bridge), opened as soon as
    the broker answers: a process started just before a broker kill tries again for up to
    OPEN_FOR_S instead of dying."""
    deadline = time.monotonic() + OPEN_FOR_S
    while True:
        try:
            if client:
                from brokers import clients

                from ..contenders.bridge import ContenderBroker

                return ContenderBroker(clients.get(client), kind, url, queue, options, role, 0)
            return registry.get(kind).open(url, queue=queue, **options)
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _quiet() -> None:
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it stops us itself


class Reports:
    """The producer's reports, sent over its pipe. Accepted ids are collected in ONE list that
    ``on_accepted`` extends and :meth:`flush` empties in place (never rebound: the producer holds
    a reference to its ``extend``), so every accepted id is sent exactly once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.accepted: list[str] = []
        self.last = time.monotonic()

    def on_accepted(self, ids: list[str], when: Any = None) -> None:
        self.accepted.extend(ids)

    def flush(self, force: bool = False) -> None:
        """Send the accepted ids collected so far: now if ``force``, else at most every REPORT_S."""
        if self.accepted and (force or time.monotonic() - self.last >= REPORT_S):
            batch = list(self.accepted)
            self.accepted.clear()
            _send(self.conn, {"e": "acc", "ids": batch, "t": time.time()})
            self.last = time.monotonic()

    def failed(self, exc: PublishFailed, own: list[str]) -> None:
        """A publish (``own``: the ids of its jobs) or a confirm-reading step (``own`` empty)
        raised: report its refused and in-doubt jobs apart. A job of the call whose fate is
        ACCEPTED is left to ``on_accepted``; one with no fate given is in doubt (as the harness
        counts it)."""
        refused, doubt = list(exc.job_ids), list(exc.in_doubt)
        fates = exc.fates if exc.fates is not None and len(exc.fates) == len(own) else [Fate.IN_DOUBT] * len(own)
        for job_id, fate in zip(own, fates):
            if job_id in refused or job_id in doubt or fate is Fate.ACCEPTED:
                continue
            (refused if fate is Fate.REFUSED else doubt).append(job_id)
        why = str(exc)[:WHY_CHARS]
        self.flush(force=True)   # acceptances before the failure go first
        if doubt:
            _send(self.conn, {"e": "doubt", "n": len(doubt), "ids": doubt, "why": why})
        if refused:
            _send(self.conn, {"e": "ref", "n": len(refused), "why": why})

    def unavailable(self, exc: BrokerUnavailable, unsent: int) -> None:
        _send(self.conn, {"e": "err", "n": unsent, "why": str(exc)[:WHY_CHARS]})


def _settle(reports: Reports, step: Callable[[], object], own: list[str]) -> bool:
    """Run one producer step, reporting what a failure says; False when the broker was unreachable."""
    try:
        step()
    except PublishInDoubt as exc:        # before PublishFailed: in doubt is not refused
        reports.failed(exc, own)
        return not isinstance(exc, BrokerUnavailable)   # UnavailableInDoubt is an outage too
    except PublishFailed as exc:         # PublishRejected: certainly not held
        reports.failed(exc, own)
    except BrokerUnavailable as exc:     # nothing of this call reached the broker
        reports.unavailable(exc, len(own))
        return False
    return True


def producer_main(conn: Connection, kind: str, url: str, queue: str, options: dict[str, Any],
                  settings: dict[str, Any], seed: int = 1, client: str = "") -> None:
    """Publish the mix at the set rate until the pipe closes or SIGTERM; on SIGTERM, wait for the
    last confirms and report every outcome before leaving. With ``client``, a contender's
    producer publishes (each job under the id chosen here, its id and send time in its trace)."""
    _quiet()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    load = LoadSettings(**settings)
    broker = _open(kind, url, queue, options, client, "producer")
    producer = broker.producer()
    reports = Reports(conn)
    producer.on_accepted = reports.on_accepted   # accepted = replied, or confirmed (windowed confirms)
    try:
        _publish_until(stopping, producer, reports, load, seed, traced=bool(client))
        _settle(reports, producer.flush, [])
        reports.flush(force=True)
    except OSError:   # the pipe is gone: the lab stopped listening
        pass
    finally:
        try:
            producer.close()
            if client:
                broker.close()
        except Exception:  # noqa: BLE001 - a broker that is gone; its outcomes were reported
            pass


def _publish_until(stopping: threading.Event, producer: Producer, reports: Reports, load: LoadSettings,
                   seed: int, traced: bool = False) -> None:
    rng = random.Random(seed)
    bank = PayloadBank(seed, ServiceModel(time_scale=load.time_scale))
    weights = PROFILES[load.profile]
    types, cumulative = list(weights), []
    total = 0.0
    for t in types:
        total += weights[t]
        cumulative.append(total)
    interval, n = 1.0 / load.rate, 0
    next_at = time.monotonic()
    while not stopping.is_set():
        now = time.monotonic()
        if now < next_at:   # read confirms while waiting: acceptances are reported on time
            _settle(reports, partial(producer.idle, min(next_at - now, 0.05)), [])
            reports.flush()
            continue
        next_at += interval
        if now - next_at > 2.0:          # fell far behind (a broker outage): do not burst to catch up
            next_at = now
        pick = rng.random() * total
        job_type = types[next(i for i, c in enumerate(cumulative) if pick <= c)]
        data = dict(bank.payload(job_type, n), sent_at=time.time())
        n += 1
        # Our own ids: a broker restarted empty starts its counter again, and a reused id would
        # hide a lost job behind a new one.
        job_id = f"j{uuid.uuid4().hex[:16]}"
        if traced:   # a contender's run reports the trace (an array, by the role protocol), not the data
            data["trace"] = [job_id, data["sent_at"]]
        if not _settle(reports, partial(producer.publish, job_type, data, JobOptions(job_id=job_id)), [job_id]):
            stopping.wait(0.5)
        reports.flush()


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
                  concurrency: int, client: str = "") -> None:
    """Run jobs until stopped (SIGTERM) or killed, reporting each run at once."""
    _quiet()
    if client:
        return _contender_consumer(conn, _open(kind, url, queue, options, client, "worker"), concurrency)
    driver = registry.get(kind)
    broker = _open(kind, url, queue, options)

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


def _contender_consumer(conn: Connection, broker: Any, concurrency: int) -> None:
    """A contender's worker (its role process, killed with this process): each run it reports is
    sent on as ours are, its id and latency read from the trace the producer gave the job."""
    def note_run(name: str, trace: Any, start: int, end: int, redelivered: bool, attempts_made: int,
                 final: bool) -> None:
        now = time.time()
        job_id, sent_at = trace if isinstance(trace, list) and len(trace) == 2 else ("", now)
        try:
            _send(conn, {"e": "ran", "id": str(job_id), "name": name, "a": attempts_made, "r": redelivered,
                         "lat": round((now - float(sent_at)) * 1000, 2), "ok": True, "t": now})
        except OSError:   # the lab is gone: the job itself still ran
            pass

    worker = broker.worker(note_run, concurrency=concurrency, prefetch=concurrency, cpu_share=CPU_SHARE)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.run()
    finally:
        broker.close()
