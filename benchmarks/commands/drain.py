"""Drain benchmark: how fast ONE worker process empties a queue of small no-op jobs.

Four contenders, each in a fresh process, on the same brokers, in alternating rounds:

  bullmq-official  the official BullMQ Python package's Worker (asyncio), concurrency C
  redis-ours       our BullMQ-style Redis worker, concurrency C (threads, batched Lua calls)
  pika-plain       the loop most pika users write: basic_consume, prefetch P, one ack per message
  amqp-ours        our AMQP worker, prefetch P, handlers inline, batched multiple-acks

Before each run the parent fills the queue with the same N jobs of about 200 bytes of JSON
(with our producers; the official Worker and the plain loop read them as they are). The child
times from just before it starts consuming until the N-th job is settled, and also reports
its CPU seconds. Figures are medians over rounds; ratios are computed within the same run.

    brokerbench drain --jobs 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from brokers import registry
from brokers.amqp.broker import RabbitMQBroker
from brokers.bullmq_redis.broker import BullMQRedisBroker
from brokers.contract import JobSpec
from brokers.provision import find

from ..harness import environment
from ..results import files as results_files

SCHEMA = "brokerbench.drain/1"
CHILD_URL = "BROKERBENCH_CHILD_URL"  # the broker URL reaches a child through its environment, not
#                                       its command line, which every user of the host can read (ps)
CONTENDERS = ("bullmq-official", "redis-ours", "pika-plain", "amqp-ours")
QUEUE = {"bullmq-official": "bb-drain-redis", "redis-ours": "bb-drain-redis",
         "pika-plain": "bb-drain-amqp", "amqp-ours": "bb-drain-amqp"}
KIND = {"bullmq-official": BullMQRedisBroker.kind, "redis-ours": BullMQRedisBroker.kind,
        "pika-plain": RabbitMQBroker.kind, "amqp-ours": RabbitMQBroker.kind}

# A user_variables_update job of about 200 bytes of JSON, the most frequent job of the seed.
PAYLOAD = {"userId": 481516, "projectId": "proj_8c2f4e1a", "chatId": 2342, "source": "telegram",
           "variables": {"lang": "ru", "step": "checkout", "cart_items": 3, "last_seen": 1732700000,
                         "utm": "tg_channel_spring", "city": "Kazan"}}


# ------------------------------------------------------------------------------------ children
def _child_bullmq_official(url: str, queue: str, jobs: int, concurrency: int, prefetch: int) -> float:
    from bullmq import Worker

    async def main() -> float:
        done = asyncio.Event()
        count = 0

        def on_completed(*_: Any) -> None:
            nonlocal count
            count += 1
            if count >= jobs:
                done.set()

        async def process(job: Any, token: str) -> None:
            return None

        started = time.perf_counter()
        worker = Worker(queue, process, {"connection": url, "concurrency": concurrency})
        worker.on("completed", on_completed)
        await done.wait()
        elapsed = time.perf_counter() - started
        await worker.close()
        return elapsed

    return asyncio.run(main())


def _child_redis_ours(url: str, queue: str, jobs: int, concurrency: int, prefetch: int) -> float:
    broker = BullMQRedisBroker(url, queue=queue)
    worker = broker.worker(lambda job: None, concurrency=concurrency)
    started = time.perf_counter()
    report = worker.run(max_jobs=jobs, timeout=600)
    elapsed = time.perf_counter() - started
    assert report.completed == jobs, report
    return elapsed


def pika_consume(url: str, queue: str, prefetch: int, jobs: int, on_body: Callable[[bytes], Any],
                 starting: Callable[[], Any] = lambda: None) -> float:
    """The loop most pika users write: basic_consume with ``prefetch``, ``on_body`` then one ack
    per message, until ``jobs`` messages; ``starting()`` is called just before consuming begins.
    Returns the perf_counter time at which the last message was acked."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    count = 0

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal count
        on_body(body)
        ch.basic_ack(method.delivery_tag)
        count += 1
        if count >= jobs:
            ch.stop_consuming()

    starting()
    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    stopped = time.perf_counter()
    connection.close()
    return stopped


def _child_pika_plain(url: str, queue: str, jobs: int, concurrency: int, prefetch: int) -> float:
    started = time.perf_counter()
    return pika_consume(url, f"{queue}.default", prefetch, jobs, json.loads) - started


def _child_amqp_ours(url: str, queue: str, jobs: int, concurrency: int, prefetch: int) -> float:
    broker = RabbitMQBroker(url, queue=queue)
    worker = broker.worker(lambda job: None, concurrency=1, prefetch=prefetch)
    started = time.perf_counter()
    report = worker.run(max_jobs=jobs, timeout=600)
    elapsed = time.perf_counter() - started
    assert report.completed == jobs, report
    return elapsed


CHILDREN: dict[str, Callable[[str, str, int, int, int], float]] = {
    "bullmq-official": _child_bullmq_official, "redis-ours": _child_redis_ours,
    "pika-plain": _child_pika_plain, "amqp-ours": _child_amqp_ours,
}


def child_main(name: str, url: str, queue: str, jobs: int, concurrency: int, prefetch: int) -> None:
    import logging

    logging.getLogger("pika").setLevel(logging.WARNING)
    cpu0 = time.process_time()
    elapsed = CHILDREN[name](url, queue, jobs, concurrency, prefetch)
    cpu = time.process_time() - cpu0
    print(json.dumps({"contender": name, "jobs": jobs, "seconds": elapsed, "cpu_seconds": cpu,
                      "jobs_per_s": jobs / elapsed}))


# -------------------------------------------------------------------------------------- parent
def fill(kind: str, url: str, queue: str, jobs: int) -> None:
    broker = registry.get(kind).open(url, queue=queue)
    try:
        broker.purge()
        with broker.producer() as producer:
            for start in range(0, jobs, 1000):
                producer.publish_many([JobSpec("user_variables_update", PAYLOAD)] * min(1000, jobs - start))
        waiting = broker.stats().waiting
        if waiting != jobs:
            raise RuntimeError(f"filled {queue} with {waiting} jobs, wanted {jobs}")
    finally:
        broker.close()


def run_one(name: str, url: str, jobs: int, concurrency: int, prefetch: int) -> dict[str, Any]:
    fill(KIND[name], url, QUEUE[name], jobs)
    time.sleep(0.5)  # let the broker settle after the fill
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.commands.drain", "--child", name, "--queue", QUEUE[name],
         "--jobs", str(jobs), "--concurrency", str(concurrency), "--prefetch", str(prefetch)],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, CHILD_URL: url})
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    medians = {name: statistics.median(r[name]["jobs_per_s"] for r in rounds) for name in rounds[0]}
    cpu = {name: statistics.median(r[name]["jobs"] / r[name]["cpu_seconds"] for r in rounds)
           for name in rounds[0]}
    pairs = {"redis-ours / bullmq-official": ("redis-ours", "bullmq-official"),
             "amqp-ours / pika-plain": ("amqp-ours", "pika-plain")}
    ratios = {}
    for label, (a, b) in pairs.items():
        if a in medians and b in medians:
            ratios[label] = {"of_medians": medians[a] / medians[b],
                             "per_round": [r[a]["jobs_per_s"] / r[b]["jobs_per_s"] for r in rounds]}
    return {"median_jobs_per_s": medians, "median_jobs_per_cpu_s": cpu, "ratios": ratios}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="brokerbench drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender, alternating (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="Redis workers' concurrency, jobs at once (default %(default)s)")
    parser.add_argument("--prefetch", type=int, default=50,
                        help="AMQP consumers' prefetch, messages (default %(default)s)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="comma-separated, of " + ", ".join(CONTENDERS) + " (default: all)")
    parser.add_argument("--out", type=Path, default=Path("reports/drain"),
                        help="folder for the results (default %(default)s)")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, os.environ[CHILD_URL], args.queue, args.jobs, args.concurrency, args.prefetch)
        return {}
    names = [n for n in args.contenders.split(",") if n]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    endpoints = {kind: find(kind) for kind in {KIND[n] for n in names}}
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(1, args.rounds + 1):
        results = {}
        for name in names:
            results[name] = run_one(name, endpoints[KIND[name]].url, args.jobs, args.concurrency, args.prefetch)
            print(f"round {number}: {name:16s} {results[name]['jobs_per_s']:10,.0f} jobs/s "
                  f"({results[name]['seconds']:.2f} s, {results[name]['cpu_seconds']:.2f} CPU s)", flush=True)
        rounds.append(results)
    described = {}
    for kind, endpoint in endpoints.items():
        broker = registry.get(kind).open(endpoint.url, queue=QUEUE[[n for n in names if KIND[n] == kind][0]])
        described[kind] = {**broker.describe(), **endpoint.describe()}
        broker.remove()
        broker.close()
    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"jobs": args.jobs, "rounds": args.rounds, "concurrency": args.concurrency,
                     "prefetch": args.prefetch, "payload_bytes": len(json.dumps(PAYLOAD, separators=(",", ":"))),
                     "contenders": names},
        "environment": environment.capture(described),
        "rounds": rounds,
        "summary": summarise(rounds),
    }
    path = results_files.write_named(result, args.out, "drain")
    print_summary(result)
    print(f"results: {path}")
    return result


def print_summary(result: dict[str, Any]) -> None:
    summary = result["summary"]
    print(f"\nmedian of {result['settings']['rounds']} rounds, {result['settings']['jobs']:,} jobs "
          f"of {result['settings']['payload_bytes']} B, one worker process each:")
    for name, rate in summary["median_jobs_per_s"].items():
        print(f"  {name:16s} {rate:10,.0f} jobs/s   {summary['median_jobs_per_cpu_s'][name]:10,.0f} jobs/CPU-s")
    for label, ratio in summary["ratios"].items():
        per_round = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
        print(f"  {label}: {ratio['of_medians']:.2f}x (per round: {per_round})")


if __name__ == "__main__":
    main()
