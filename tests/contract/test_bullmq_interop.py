"""Fidelity to BullMQ, proved with the official ``bullmq`` Python package (pinned, test-only).

Jobs added by the official Queue are run by our worker, and jobs added by our producer are run
by the official Worker; both end in the state BullMQ itself reports.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from bullmq import Job, Queue, Worker

from brokers.bullmq_redis.broker import BullMQRedisBroker
from brokers.contract import Backoff, JobOptions
from tests.helpers.recorder import Recorder


@pytest.fixture
def queue_name():
    return f"interop-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ours(endpoints, queue_name):
    broker = BullMQRedisBroker(endpoints["redis"].url, queue=queue_name)
    yield broker
    broker.purge()
    broker.close()


def run(coro):
    return asyncio.run(coro)


async def official_state(url: str, queue_name: str, job_id: str) -> tuple[str, Job]:
    queue = Queue(queue_name, {"connection": url})
    try:
        job = await Job.fromId(queue, job_id)
        return await job.getState(), job
    finally:
        await queue.close()


def test_official_queue_job_is_processed_by_our_worker(endpoints, ours, queue_name):
    url = endpoints["redis"].url

    async def add() -> list[str]:
        queue = Queue(queue_name, {"connection": url})
        try:
            job = await queue.add("heavy_workflow_execution", {"projectId": "proj123", "trigger": "message"},
                                  {"attempts": 2, "backoff": {"type": "fixed", "delay": 50},
                                   "removeOnComplete": False})
            failing = await queue.add("user_variables_update", {"userId": 7}, {"attempts": 1})
            return [job.id, failing.id]
        finally:
            await queue.close()

    job_id, failing_id = run(add())
    rec = Recorder()
    report = ours.worker(rec.handler(fail=lambda job: job.name == "user_variables_update"
                                     or job.attempts_made == 0)).run(max_jobs=3, timeout=20)
    assert report.retried == 1 and report.completed == 1 and report.failed == 1
    runs = rec.of(job_id)
    assert [r.attempts_made for r in runs] == [0, 1]
    assert runs[0].data == {"projectId": "proj123", "trigger": "message"}

    state, job = run(official_state(url, queue_name, job_id))
    assert state == "completed"
    assert job.returnvalue == {"done": job_id}
    assert job.attemptsMade == 2
    assert job.finishedOn >= job.processedOn > 0

    state, failed = run(official_state(url, queue_name, failing_id))
    assert state == "failed"
    assert "planned failure" in failed.failedReason


def test_our_job_is_processed_by_the_official_worker(endpoints, ours, queue_name):
    url = endpoints["redis"].url
    with ours.producer() as producer:
        job_id = producer.publish("statistics_aggregation", {"projectId": "p9", "period": "day"},
                                  JobOptions(attempts=2, backoff=Backoff("exponential", 40),
                                             remove_on_complete=False))
    calls: list[tuple[int, float]] = []

    async def consume() -> None:
        done = asyncio.Event()

        async def process(job, token):
            calls.append((job.attemptsMade, time.time()))
            if job.attemptsMade == 0:
                raise RuntimeError("first attempt fails")
            return {"rows": len(job.data)}

        worker = Worker(queue_name, process, {"connection": url, "concurrency": 1})
        worker.on("completed", lambda job, result: done.set())
        try:
            await asyncio.wait_for(done.wait(), timeout=20)
        finally:
            await worker.close()

    run(consume())
    assert [attempt for attempt, _ in calls] == [0, 1]
    assert calls[1][1] - calls[0][1] >= 0.035  # exponential backoff, first step 40 ms
    stats = ours.stats()
    assert (stats.completed, stats.failed, stats.waiting, stats.active) == (1, 0, 0, 0)
    fields = ours.job_hash(job_id)
    assert json.loads(fields["returnvalue"]) == {"rows": 2}
    assert fields["atm"] == "2"
    state, _ = run(official_state(url, queue_name, job_id))
    assert state == "completed"


def test_official_worker_sees_our_priorities_and_delays(endpoints, ours, queue_name):
    url = endpoints["redis"].url
    with ours.producer() as producer:
        producer.publish("user_variables_update", {"tag": "delayed"}, JobOptions(delay_ms=400))
        producer.publish("user_variables_update", {"tag": "p3"}, JobOptions(priority=3))
        producer.publish("user_variables_update", {"tag": "p1"}, JobOptions(priority=1))
        producer.publish("user_variables_update", {"tag": "plain"})
    order: list[str] = []

    async def consume() -> None:
        done = asyncio.Event()

        async def process(job, token):
            order.append(job.data["tag"])
            if len(order) == 4:
                done.set()

        worker = Worker(queue_name, process, {"connection": url, "concurrency": 1})
        try:
            await asyncio.wait_for(done.wait(), timeout=20)
        finally:
            await worker.close()

    run(consume())
    # BullMQ runs jobs without priority first, then by priority; the delayed one when due.
    assert order == ["plain", "p1", "p3", "delayed"]


def test_our_worker_sees_official_priorities_and_delays(endpoints, ours, queue_name):
    url = endpoints["redis"].url

    async def add() -> None:
        queue = Queue(queue_name, {"connection": url})
        try:
            await queue.add("user_variables_update", {"tag": "delayed"}, {"delay": 400})
            await queue.add("user_variables_update", {"tag": "p3"}, {"priority": 3})
            await queue.add("user_variables_update", {"tag": "p1"}, {"priority": 1})
            await queue.add("user_variables_update", {"tag": "plain"})
        finally:
            await queue.close()

    run(add())
    rec = Recorder()
    ours.worker(rec.handler()).run(max_jobs=4, timeout=20)
    assert [s.data["tag"] for s in rec.seen] == ["plain", "p1", "p3", "delayed"]
