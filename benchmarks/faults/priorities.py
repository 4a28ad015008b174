"""Scenario 6, priorities under a backlog: how long do urgent jobs wait behind a queue of
low-priority ones?

A backlog of low-priority jobs (priority 10) is published first; then, while one worker
drains it (4 at a time, 2 ms each), an urgent job (priority 1) arrives every 20 ms.
Expectation: urgent jobs wait a few job-times at most, low ones wait for the whole backlog.
On RabbitMQ the worker's prefetch window holds jobs already taken out of the priority queue,
so an urgent job can wait behind up to ``prefetch`` low ones: prefetch is kept equal to the
concurrency here, as RabbitMQ's documentation advises for priorities.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime
from typing import Any

from brokers import registry
from brokers.contract import Job, JobOptions, JobSpec

from ..harness.metrics import new_histogram, record_us, summary
from ..harness.scenario import Scenario
from ..results.percentiles import of_summary
from .common import Row, Session, write_result

LOW, HIGH = 10, 1
WORK_S = 0.002


def _run(kind: str, url: str, backlog: int) -> dict[str, Any]:
    driver = registry.get(kind)
    broker = driver.open(url, queue=f"bb-prio-{kind}-{random.randrange(10**6)}", **driver.priority_options)
    waits = {LOW: new_histogram(), HIGH: new_histogram()}
    lock = threading.Lock()

    def handle(job: Job) -> None:
        with lock:
            record_us(waits[job.options.priority], int((time.time() - job.data["sent"]) * 1e9))
        time.sleep(WORK_S)

    try:
        with broker.producer() as producer:
            now = time.time()
            for start in range(0, backlog, 500):
                producer.publish_many([JobSpec("statistics_aggregation", {"sent": now}, JobOptions(priority=LOW))
                                       for _ in range(min(500, backlog - start))])
            producer.flush()
        urgent = int(backlog * WORK_S / 4 / 0.02 * 0.8)  # arrivals while most of the backlog drains
        worker = broker.worker(handle, concurrency=4, **driver.worker_options(4, 4))
        thread = worker.start_in_thread(max_jobs=backlog + urgent, timeout=120)
        with broker.producer() as producer:
            for _ in range(urgent):
                time.sleep(0.02)
                producer.publish("heavy_workflow_execution", {"sent": time.time()}, JobOptions(priority=HIGH))
            producer.flush()
        thread.join(timeout=150)
        return {"high_wait_ms": summary(waits[HIGH]), "low_wait_ms": summary(waits[LOW]), "urgent": urgent,
                "backlog": backlog, "describe": broker.describe()}
    finally:
        broker.remove()
        broker.close()


def run_scenario(session: Session) -> list[Row]:
    rows = []
    backlog = int(session.size(4000, 1000))
    for kind in session.kinds:
        url = session.brokers.default_instance(kind).url
        started = datetime.now().astimezone()
        figures = _run(kind, url, backlog)
        high, low = figures["high_wait_ms"], figures["low_wait_ms"]
        expectation = "urgent jobs wait far less than the backlog (p99 under a tenth of the low jobs' p50)"
        met = high.get("count") == figures["urgent"] and (high.get("p99") or 1e9) < (low.get("p50") or 0) / 10
        note = (f"urgent (priority 1) wait {of_summary(high, 'p50')}, {of_summary(high, 'p99')}; backlog "
                f"(priority 10) wait {of_summary(low, 'p50')}, {of_summary(low, 'p99')}")
        described = figures.pop("describe")
        scenario = Scenario(broker=kind, mode="drain", drain_jobs=backlog, label=f"priorities-{kind}").to_dict()
        path = write_result(session, scenario, described, started, expectation, met, **figures)
        rows.append(Row("priorities under backlog", kind, f"{backlog:,} low + {figures['urgent']} urgent", None,
                        None, None, expectation, met, note, path))
    return rows
