"""Scenario 5, retries and delays at scale: how late do delayed and retried jobs run?

Lateness = when a job starts - when it was due (publish time + delay, or failure + backoff).
* 10,000 delayed jobs (delays 250 ms to 3 s, random) published over 10 s;
* 10,000 jobs, published over 10 s, whose first attempt fails, retried after a 500 ms backoff;
* RabbitMQ's per-message TTL pitfall: one message with a 3 s TTL followed by short-TTL
  messages in ONE queue: RabbitMQ expires messages only at the head of a queue, so the short
  ones wait for the long one. The adapter avoids it with one queue per delay value; both are
  measured side by side.
Expectation: no job runs before it is due; lateness stays small (tens of ms) for the adapters;
the naive single TTL queue makes short delays seconds late.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime
from typing import Any

import pika

from brokers import registry
from brokers.contract import Backoff, BackoffType, Job, JobOptions, JobSpec

from ..harness.metrics import new_histogram, record_us, summary
from ..harness.scenario import Scenario
from .common import Row, Session, write_result

DELAYS_MS = (250, 500, 1000, 2000, 3000)
BACKOFF_MS = 500


def _lateness_run(kind: str, url: str, n: int, retries: bool, delays: list[int] | None = None,
                  spread_s: float = 0.0) -> dict[str, Any]:
    """Publish n delayed (or failing-once) jobs, evenly over ``spread_s`` seconds while a worker
    runs, and return how late each ran. Delays are drawn from DELAYS_MS, or taken in order from
    ``delays``. Spreading the arrivals keeps the lateness about the delay mechanism: 10,000 jobs
    due in the same instant would measure how fast a worker drains a burst instead."""
    driver = registry.get(kind)
    broker = driver.open(url, queue=f"bb-delays-{kind}-{random.randrange(10**6)}")
    early, lock = 0, threading.Lock()
    hist = new_histogram()
    failed_at: dict[str, float] = {}

    def handle(job: Job) -> None:
        nonlocal early
        now = time.time()
        if retries:
            if job.attempts_made == 0:
                with lock:
                    failed_at[job.id] = time.time()
                raise RuntimeError("first attempt fails")
            due = failed_at[job.id] + BACKOFF_MS / 1000
        else:
            due = job.data["sent"] + job.data["delay_ms"] / 1000
        with lock:
            if now < due - 0.002:  # clocks are read in ms by brokers: 2 ms of rounding allowed
                early += 1
            record_us(hist, max(int((now - due) * 1e9), 0))

    rng = random.Random(5)
    worker = broker.worker(handle, concurrency=16, **driver.worker_options(16, 64))
    thread = worker.start_in_thread(max_jobs=n * (2 if retries else 1), timeout=120 + spread_s)
    try:
        with broker.producer() as producer:
            batch = 50
            started = time.monotonic()
            for start in range(0, n, batch):
                if spread_s:
                    wait = started + spread_s * start / n - time.monotonic()
                    if wait > 0:
                        producer.idle(wait)
                specs = []
                for i in range(start, min(start + batch, n)):
                    delay = 0 if retries else delays[i] if delays else rng.choice(DELAYS_MS)
                    options = JobOptions(attempts=2, backoff=Backoff(BackoffType.FIXED, BACKOFF_MS)) if retries \
                        else JobOptions(delay_ms=delay)
                    specs.append(JobSpec("user_variables_update", {"i": i, "sent": time.time(), "delay_ms": delay},
                                         options))
                producer.publish_many(specs)
        thread.join(timeout=150 + spread_s)
        return {"lateness_ms": summary(hist), "early": early, "jobs": n, "completed": worker.report.completed,
                "arrivals_over_s": spread_s, "describe": broker.describe()}
    finally:
        worker.stop()
        thread.join(timeout=30)
        broker.purge()
        broker.close()


def _naive_ttl_queue(url: str, short: int) -> dict[str, Any]:
    """The pitfall, with pika directly: per-message TTLs in one queue dead-lettering to a target."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    wait_q, target_q = "bb-naive-ttl-wait", "bb-naive-ttl-target"
    for q in (wait_q, target_q):
        ch.queue_delete(q)
    ch.queue_declare(target_q, durable=True)
    ch.queue_declare(wait_q, durable=True, arguments={"x-dead-letter-exchange": "",
                                                      "x-dead-letter-routing-key": target_q})
    ch.confirm_delivery()
    sent = time.time()
    def send(ttl_ms: int) -> None:
        props = pika.BasicProperties(expiration=str(ttl_ms), headers={"due_ms": int(sent * 1000) + ttl_ms})
        ch.basic_publish("", wait_q, b"{}", props)

    send(3000)  # the long one first: it holds the head of the queue
    for _ in range(short):
        send(300)
    hist = new_histogram()
    got = 0
    deadline = time.time() + 20
    while got < short + 1 and time.time() < deadline:
        method, props, _ = ch.basic_get(target_q, auto_ack=True)
        if method is None:
            time.sleep(0.005)
            continue
        got += 1
        due = props.headers["due_ms"] / 1000
        if due < sent + 1:  # a short one
            record_us(hist, max(int((time.time() - due) * 1e9), 0))
    for q in (wait_q, target_q):
        ch.queue_delete(q)
    conn.close()
    return {"lateness_ms": summary(hist), "jobs": short}


def run_scenario(session: Session) -> list[Row]:
    rows = []
    n = int(session.size(10_000, 1_000))
    spread = session.size(10.0, 2.0)
    for kind in session.kinds:
        url = session.brokers.default_instance(kind).url
        for retries in (False, True):
            started = time.time()
            figures = _lateness_run(kind, url, n, retries, spread_s=spread)
            lat = figures["lateness_ms"]
            what = (f"{n:,} retried jobs, {BACKOFF_MS} ms backoff" if retries else f"{n:,} delayed jobs, 0.25-3 s") \
                + f", arriving over {spread:.0f} s"
            expectation = "none early; p99 lateness under 1 s"
            met = figures["early"] == 0 and figures["completed"] == n and (lat.get("p99") or 0) < 1000
            note = (f"lateness p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms; "
                    f"early {figures['early']}")
            path = _write(session, kind, "retries" if retries else "delays", figures, started, expectation, met)
            rows.append(Row("delays at scale", kind, what, n - figures["completed"], None, None, expectation,
                            met, note, path))
        if registry.get(kind).protocol == registry.PROTOCOL_AMQP_091:  # a pitfall of AMQP's per-message TTL
            started = time.time()
            short = int(session.size(200, 50))
            naive = _naive_ttl_queue(url, short=short)
            ours = _lateness_run(kind, url, short + 1, retries=False, delays=[3000] + [300] * short)
            lat, ours_lat = naive["lateness_ms"], ours["lateness_ms"]
            expectation = "one TTL queue: short delays wait for the long head; per-delay queues do not"
            met = (lat.get("p50") or 0) > 1000 and (ours_lat.get("p99") or 0) < 1000
            note = (f"naive single queue: 300 ms jobs behind a 3 s one ran p50 {lat.get('p50')} ms late; "
                    f"per-delay queues: p99 {ours_lat.get('p99')} ms late")
            path = _write(session, kind, "ttl-head-of-line", {**naive, "per_delay_queues": ours}, started,
                          expectation, met)
            rows.append(Row("delays at scale", kind, "per-message TTL pitfall", None, None, None, expectation,
                            met, note, path))
    return rows


def _write(session: Session, kind: str, label: str, figures: dict[str, Any], started: float,
           expectation: str, met: bool) -> str:
    described = figures.pop("describe", None) or {"kind": kind}
    scenario = Scenario(broker=kind, mode="drain", label=f"delays-{label}-{kind}").to_dict()
    return write_result(session, scenario, described, datetime.fromtimestamp(started).astimezone(), expectation,
                        met, **figures)
