"""Scenario 5, retries and delays at scale: how late do delayed and retried jobs run, and what
does a delay cost the broker?

Lateness = when a job starts - when it was due (publish time + delay, or failure + backoff).
* 10,000 delayed jobs, delays drawn at random (to the ms) from 250 ms to 3 s, published over 10 s;
* 10,000 jobs, published over 10 s, whose first attempt fails, retried after a 500 ms backoff;
* on AMQP brokers, two teaching variants beside the adapter's 28 binary delay levels:
  - a queue per delay value (what this adapter did before): the same 10,000 random delays make
    one queue and one binding per distinct value, thousands of them; both designs are driven by
    the same raw client and consumer, so lateness and broker CPU compare on equal terms;
  - the per-message TTL pitfall: one message with a 3 s TTL followed by short-TTL messages in
    ONE queue: RabbitMQ expires messages only at the head of a queue, so the short ones wait for
    the long one. Each delay level holds one TTL, so the adapter cannot fall into it.
  The broker itself counts the queues and bindings each design made (rabbitmqctl on the private
  node).
Expectation: no job runs before it is due; lateness stays small (tens of ms) for the adapters;
the delay levels stay at 28 queues whatever the delays; the naive single TTL queue makes short
delays seconds late. The levels' price: a message passes one level per set bit of its delay
(rounded up to 16 ms), each pass a dead-lettering step for the broker: more broker CPU per
delayed job, and lateness a few ms above a queue per value's.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime
from typing import Any, Callable

import pika

from brokers import registry
from brokers.contract import Backoff, BackoffType, Job, JobOptions, JobSpec

from ..harness.metrics import encode, new_histogram, record_us, summary
from ..harness.scenario import Scenario
from ..results.percentiles import of_summary
from .common import Row, Session, write_result

DELAY_RANGE_MS = (250, 3000)
BACKOFF_MS = 500


def _random_delays(n: int, seed: int = 5) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(*DELAY_RANGE_MS) for _ in range(n)]


def _lateness_run(kind: str, url: str, n: int, retries: bool, delays: list[int] | None = None,
                  spread_s: float = 0.0, count: Callable[[str], dict[str, int]] | None = None) -> dict[str, Any]:
    """Publish n delayed (or failing-once) jobs, evenly over ``spread_s`` seconds while a worker
    runs, and return how late each ran. Delays are taken in order from ``delays`` (default:
    random, 250 ms to 3 s). Spreading the arrivals keeps the lateness about the delay mechanism:
    10,000 jobs due in the same instant would measure how fast a worker drains a burst instead.
    ``count(queue)``, if given, counts the broker's objects of the queue before it is purged."""
    driver = registry.get(kind)
    broker = driver.open(url, queue=f"bb-delays-{kind}-{random.randrange(10**6)}")
    delays = delays or _random_delays(n)
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
                    delay = 0 if retries else delays[i]
                    options = JobOptions(attempts=2, backoff=Backoff(BackoffType.FIXED, BACKOFF_MS)) if retries \
                        else JobOptions(delay_ms=delay)
                    specs.append(JobSpec("user_variables_update", {"i": i, "sent": time.time(), "delay_ms": delay},
                                         options))
                producer.publish_many(specs)
        thread.join(timeout=150 + spread_s)
        figures = {"lateness_ms": summary(hist), "lateness_histogram": encode(hist), "early": early, "jobs": n,
                   "completed": worker.report.completed,
                   "arrivals_over_s": spread_s, "describe": broker.describe()}
        if count is not None:
            figures["objects"] = count(broker.queue)
        return figures
    finally:
        worker.stop()
        thread.join(timeout=30)
        broker.remove()
        broker.close()


def _broker_objects(instance: Any, prefix: str) -> dict[str, int]:
    """Queues and bindings (those of the default exchange, implicit, left out) whose names start
    with ``prefix``, as RabbitMQ lists them."""
    queues = instance.ctl("list_queues", "name", "-q", "--no-table-headers").stdout.split()
    bindings = instance.ctl("list_bindings", "source_name", "destination_name", "-q", "--no-table-headers").stdout
    return {"queues": sum(1 for q in queues if q.startswith(prefix)),
            "bindings": sum(1 for line in bindings.splitlines() if line.split("\t")[0]
                            and any(part.startswith(prefix) for part in line.split("\t")))}


class _PerValueQueues:
    """The teaching variant: a queue per delay value (x-message-ttl = the value), declared on
    first use, bound to a headers exchange by the value, dead-lettering to the target queue."""

    def __init__(self, ch: Any, prefix: str) -> None:
        self.ch, self.prefix = ch, prefix
        self.exchange, self.target = f"{prefix}.delay", f"{prefix}.target"
        self.declared: set[int] = set()
        self.declare_s = 0.0
        ch.exchange_declare(self.exchange, "headers", durable=True)
        ch.queue_declare(self.target, durable=True)

    def publish(self, delay: int, props: pika.BasicProperties) -> None:
        if delay not in self.declared:  # one queue and one binding per distinct value
            started = time.monotonic()
            queue = f"{self.prefix}.delay.{delay}"
            self.ch.queue_declare(queue, durable=True, arguments={
                "x-message-ttl": delay, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.target})
            self.ch.queue_bind(queue, self.exchange, arguments={"x-match": "all", "bb-delay": str(delay)})
            self.declared.add(delay)
            self.declare_s += time.monotonic() - started
        props.headers["bb-delay"] = str(delay)
        self.ch.basic_publish(self.exchange, "", b"{}", props)

    def delete(self) -> None:
        for delay in self.declared:
            self.ch.queue_delete(f"{self.prefix}.delay.{delay}")
        self.ch.queue_delete(self.target)
        self.ch.exchange_delete(self.exchange)


class _DelayLevels:
    """The adapter's delay levels (its own Topology), driven by the same raw client."""

    def __init__(self, ch: Any, prefix: str) -> None:
        from brokers.amqp.topology import Topology

        self.ch, self.topology = ch, Topology(prefix, {})
        self.target = self.topology.lane_queue("default")
        started = time.monotonic()
        self.topology.declare(ch)
        self.declare_s = time.monotonic() - started

    def publish(self, delay: int, props: pika.BasicProperties) -> None:
        exchange, bits = self.topology.delayed_route(delay)
        props.headers.update(bits)
        self.ch.basic_publish(exchange, "user_variables_update", b"{}", props)

    def delete(self) -> None:
        for name in self.topology.all_queues():
            self.ch.queue_delete(name)
        for name in self.topology.all_exchanges():
            self.ch.exchange_delete(name)


def _delay_design(design: str, url: str, instance: Any, delays: list[int], spread_s: float) -> dict[str, Any]:
    """Both designs side by side on equal terms: the same delays, published over ``spread_s``
    by a raw pika client (confirms on), read back by a raw consumer (no worker in the way);
    lateness, the broker's objects (as it lists them) and the broker's CPU seconds."""
    import psutil

    prefix = f"bb-{design}-{uuid.uuid4().hex[:6]}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    impl = _PerValueQueues(ch, prefix) if design == "per-value" else _DelayLevels(ch, prefix)
    ch.confirm_delivery()
    hist, early, got, lock = new_histogram(), [0], [0], threading.Lock()

    def consume() -> None:
        c = pika.BlockingConnection(pika.URLParameters(url))
        cc = c.channel()
        deadline = time.time() + spread_s + max(delays) / 1000 + 30
        for _method, props, _body in cc.consume(impl.target, auto_ack=True, inactivity_timeout=0.5):
            if props is not None:
                now = time.time()
                due = props.headers["due_ms"] / 1000
                with lock:
                    got[0] += 1
                    early[0] += now < due - 0.002
                    record_us(hist, max(int((now - due) * 1e9), 0))
            if got[0] >= len(delays) or time.time() > deadline:
                break
        cc.cancel()
        c.close()

    beam = psutil.Process(instance.pid)
    cpu_before = sum(beam.cpu_times()[:2])
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    started = time.monotonic()
    for i, delay in enumerate(delays):
        wait = started + spread_s * i / len(delays) - time.monotonic()
        if wait > 0:
            conn.process_data_events(time_limit=wait)
        impl.publish(delay, pika.BasicProperties(delivery_mode=2, headers={"due_ms": int(time.time() * 1000) + delay}))
    consumer.join(timeout=spread_s + max(delays) / 1000 + 60)
    broker_cpu = sum(beam.cpu_times()[:2]) - cpu_before
    objects = _broker_objects(instance, prefix + ".delay")
    impl.delete()
    conn.close()
    return {"design": design, "lateness_ms": summary(hist), "early": early[0], "jobs": len(delays),
            "completed": got[0], "distinct_delays": len(set(delays)), "declare_seconds": round(impl.declare_s, 2),
            "objects": objects, "broker_cpu_s": round(broker_cpu, 2)}


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
    delays = _random_delays(n)
    for kind in session.kinds:
        instance = session.brokers.default_instance(kind)
        url = instance.url
        amqp = registry.get(kind).protocol == registry.PROTOCOL_AMQP_091
        for retries in (False, True):
            started = time.time()
            count = (lambda queue, node=instance: _broker_objects(node, f"{queue}.delay")) \
                if amqp and not retries else None
            figures = _lateness_run(kind, url, n, retries, delays=delays, spread_s=spread, count=count)
            lat = figures["lateness_ms"]
            what = (f"{n:,} retried jobs, {BACKOFF_MS} ms backoff" if retries else
                    f"{n:,} delayed jobs, random 0.25-3 s") + f", arriving over {spread:.0f} s"
            expectation = "none early; p99 lateness under 1 s"
            met = figures["early"] == 0 and figures["completed"] == n and (lat.get("p99") or 0) < 1000
            note = (f"lateness {of_summary(lat, 'p50')}, {of_summary(lat, 'p99')}, max {lat.get('max')} ms; "
                    f"early {figures['early']}")
            if count is not None:
                expectation = "none early; p99 lateness under 1 s; at most 28 delay queues, whatever the delays"
                met = met and figures["objects"]["queues"] <= 28
                note += (f"; delay levels: {figures['objects']['queues']} queues, "
                         f"{figures['objects']['bindings']} bindings for {len(set(delays)):,} distinct delays")
            path = _write(session, kind, "retries" if retries else "delays", figures, started, expectation, met)
            rows.append(Row("delays at scale", kind, what, n - figures["completed"], None, None, expectation,
                            met, note, path))
        if amqp:
            for design in ("levels", "per-value"):
                started = time.time()
                found = _delay_design(design, url, instance, delays, spread)
                lat, objects = found["lateness_ms"], found["objects"]
                if design == "levels":
                    what = f"the 28 delay levels, raw client, {n:,} delays"
                    expectation = "at most 28 queues, whatever the delays; none early"
                    met = objects["queues"] <= 28 and found["early"] == 0 and found["completed"] == n
                else:
                    what = f"a queue per delay value (teaching variant), raw client, {n:,} delays"
                    expectation = "a queue and a binding per distinct delay: the broker's objects grow with the delays"
                    met = objects["queues"] == found["distinct_delays"] and found["early"] == 0
                note = (f"{objects['queues']:,} queues and {objects['bindings']:,} bindings for "
                        f"{found['distinct_delays']:,} distinct delays (declared in {found['declare_seconds']} s); "
                        f"lateness {of_summary(lat, 'p50')}, {of_summary(lat, 'p99')}; broker CPU "
                        f"{found['broker_cpu_s']} s")
                missing = found["jobs"] - found["completed"]
                if missing:  # a raw client without confirms: "lost" (accepted, never run) would overstate it
                    note += f"; {missing:,} not delivered before the consumer's deadline"
                path = _write(session, kind, f"design-{design}", found, started, expectation, met)
                rows.append(Row("delays at scale", kind, what, None, None, None, expectation, met, note, path))

            started = time.time()
            short = int(session.size(200, 50))
            naive = _naive_ttl_queue(url, short=short)
            ours = _lateness_run(kind, url, short + 1, retries=False, delays=[3000] + [300] * short)
            lat, ours_lat = naive["lateness_ms"], ours["lateness_ms"]
            expectation = "one TTL queue: short delays wait for the long head; the delay levels do not"
            met = (lat.get("p50") or 0) > 1000 and (ours_lat.get("p99") or 0) < 1000
            note = (f"naive single queue: 300 ms jobs behind a 3 s one ran {of_summary(lat, 'p50')} late; "
                    f"delay levels: {of_summary(ours_lat, 'p99')} late")
            path = _write(session, kind, "ttl-head-of-line", {**naive, "delay_levels": ours}, started,
                          expectation, met)
            rows.append(Row("delays at scale", kind, "per-message TTL pitfall", None, None, None, expectation,
                            met, note, path))
    return rows


def _write(session: Session, kind: str, label: str, figures: dict[str, Any], started: float,
           expectation: str, met: bool) -> str:
    described = figures.pop("describe", None) or {"kind": kind}
    figures.get("delay_levels", {}).pop("describe", None)
    scenario = Scenario(broker=kind, mode="drain", label=f"delays-{label}-{kind}").to_dict()
    return write_result(session, scenario, described, datetime.fromtimestamp(started).astimezone(), expectation,
                        met, **figures)
