"""Single operations on both adapters (pytest-benchmark): speed figures, not pass/fail.

    pytest benchmarks/bench --benchmark-only
"""

from __future__ import annotations

from brokers.contract import JobSpec

from .conftest import TINY, Echo

PAYLOAD = {"userId": 481516, "projectId": "proj_8c2f4e1a", "variables": {"lang": "ru", "step": "checkout"}}
ROUNDS = 20 if TINY else 300


def test_enqueue_round_trip(benchmark, bench_broker):
    """One publish, until the broker accepted it (Redis reply; RabbitMQ confirm, awaited by flush)."""
    producer = bench_broker.producer()

    def enqueue() -> None:
        producer.publish("user_variables_update", PAYLOAD)
        producer.flush()

    benchmark.extra_info["broker"] = bench_broker.kind
    benchmark.pedantic(enqueue, rounds=ROUNDS, iterations=1, warmup_rounds=5)
    producer.close()


def test_publish_batch_of_100(benchmark, bench_broker):
    """publish_many of 100 jobs (one Lua call; windowed confirms), flushed."""
    producer = bench_broker.producer()
    specs = [JobSpec("user_variables_update", PAYLOAD)] * 100

    def batch() -> None:
        producer.publish_many(specs)
        producer.flush()

    benchmark.extra_info.update(broker=bench_broker.kind, jobs_per_round=100)
    benchmark.pedantic(batch, rounds=max(ROUNDS // 10, 3), iterations=1, warmup_rounds=1)
    producer.close()


def test_full_job_lifecycle(benchmark, bench_broker, echo: Echo):
    """Publish one job and wait until a running worker has handled it."""
    producer = bench_broker.producer()

    def lifecycle() -> None:
        echo.done.clear()
        producer.publish("user_variables_update", PAYLOAD)
        producer.flush()
        assert echo.done.wait(10), "the worker never got the job"

    benchmark.extra_info["broker"] = bench_broker.kind
    benchmark.pedantic(lifecycle, rounds=ROUNDS, iterations=1, warmup_rounds=5)
    producer.close()
