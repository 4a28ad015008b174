"""Enqueue benchmark: how fast one producer adds no-op jobs, ours against the reference clients,
in alternating rounds. Nothing consumes meanwhile; each queue is emptied after its round.

  bullmq-official        the official BullMQ Python package: ``await Queue.add`` one job at a time
  redis-ours             our Redis producer, ``publish`` one job at a time (one Lua call each)
  redis-ours-batch       our Redis producer, ``publish_many`` in batches (one pipeline per batch)
  pika-plain             plain pika, confirms on, each confirm awaited (``basic_publish`` one at a time)
  amqp-ours              our AMQP producer, ``publish`` one at a time, windowed confirms; the clock
                         stops after the last confirm (``flush``)
  amqp-ours-batch        our AMQP producer, ``publish_many`` in batches, windowed confirms
  amqp-ours-batch-noconf the same with confirms off: "accepted" means written to the socket only

Every AMQP contender publishes persistent messages to a durable queue; the Redis contenders use
the Redis as found (the output says whether it keeps anything on disk). One process does it all,
so the figures are one Python thread's rate, CPU time included. After each round the queue is
counted: a contender that loses jobs cannot look fast.

    brokerbench enqueue --jobs 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

from brokers import registry
from brokers.contract import JobSpec
from brokers.provision import find

from ..harness import environment
from ..results import files as results_files
from .latency import PAYLOAD, cleanup_queue

SCHEMA = "brokerbench.enqueue/1"
CONTENDERS = ("bullmq-official", "redis-ours", "redis-ours-batch", "pika-plain", "amqp-ours", "amqp-ours-batch",
              "amqp-ours-batch-noconf")
KIND = {name: "redis" if name.startswith(("bullmq", "redis")) else "rabbitmq" for name in CONTENDERS}
PAIRS = {"redis-ours / bullmq-official": ("redis-ours", "bullmq-official"),
         "amqp-ours / pika-plain": ("amqp-ours", "pika-plain"),
         "amqp-ours-batch / amqp-ours": ("amqp-ours-batch", "amqp-ours")}
WARMUP = 200  # jobs sent before the clock starts (connections opened, scripts loaded)
JOB_TYPE = "user_variables_update"


def _job(i: int) -> dict[str, Any]:
    return {**PAYLOAD, "i": i}


def _timed(send: Callable[[int, int], None], jobs: int) -> float:
    """``send(n, first)`` sends jobs first..first+n-1; the warm-up ones are not timed."""
    send(WARMUP, 0)
    start = time.perf_counter()
    send(jobs, WARMUP)
    return time.perf_counter() - start


def _ours(url: str, queue: str, jobs: int, batch: int, *, many: bool, kind: str, **options: Any) -> float:
    broker = registry.get(kind).open(url, queue=queue)
    try:
        with broker.producer(**options) as producer:
            def send(n: int, first: int) -> None:
                end = first + n
                if many:
                    for at in range(first, end, batch):
                        producer.publish_many([JobSpec(JOB_TYPE, _job(i)) for i in range(at, min(at + batch, end))])
                else:
                    for i in range(first, end):
                        producer.publish(JOB_TYPE, _job(i))
                producer.flush()  # the last confirms are part of the time

            return _timed(send, jobs)
    finally:
        broker.close()


def _pika_plain(url: str, queue: str, jobs: int, batch: int) -> float:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2, content_type="application/json")

        def send(n: int, first: int) -> None:
            for i in range(first, first + n):
                channel.basic_publish("", queue, json.dumps(_job(i)).encode(), persistent)

        return _timed(send, jobs)
    finally:
        connection.close()


def _bullmq_official(url: str, queue: str, jobs: int, batch: int) -> float:
    from bullmq import Queue

    async def add_all() -> float:
        q = Queue(queue, {"connection": url})
        try:
            for i in range(WARMUP):
                await q.add(JOB_TYPE, _job(i))
            start = time.perf_counter()
            for i in range(WARMUP, WARMUP + jobs):
                await q.add(JOB_TYPE, _job(i))
            return time.perf_counter() - start
        finally:
            await q.close()

    return asyncio.run(add_all())


RUN: dict[str, Callable[..., float]] = {
    "bullmq-official": _bullmq_official,
    "redis-ours": partial(_ours, many=False, kind="redis"),
    "redis-ours-batch": partial(_ours, many=True, kind="redis"),
    "pika-plain": _pika_plain,
    "amqp-ours": partial(_ours, many=False, kind="rabbitmq", confirms="windowed"),
    "amqp-ours-batch": partial(_ours, many=True, kind="rabbitmq", confirms="windowed"),
    "amqp-ours-batch-noconf": partial(_ours, many=True, kind="rabbitmq", confirms="off")}


def _stored(name: str, url: str, queue: str, expected: int, wait_s: float = 5.0) -> int:
    """Jobs the broker holds in the queue, read until it holds ``expected`` or ``wait_s`` passed
    (without confirms, the last messages may still be on their way)."""
    deadline = time.monotonic() + wait_s
    while True:
        if name == "pika-plain":
            import pika

            connection = pika.BlockingConnection(pika.URLParameters(url))
            count = connection.channel().queue_declare(queue, passive=True).method.message_count
            connection.close()
        else:
            broker = registry.get(KIND[name]).open(url, queue=queue)
            count = broker.stats().waiting or 0
            broker.close()
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def run_one(name: str, url: str, jobs: int, batch: int, round_: int) -> dict[str, Any]:
    """One contender in one round: its rate, and how many jobs the queue holds afterwards (the
    untimed warm-up ones included)."""
    queue = f"bb-enqueue-{name}-{os.getpid()}-{round_}"
    try:
        seconds = RUN[name](url, queue, jobs, batch)
        stored = _stored(name, url, queue, WARMUP + jobs)
    finally:
        cleanup_queue(url, queue, None if name == "pika-plain" else KIND[name])
    return {"jobs_per_s": jobs / seconds, "sent": WARMUP + jobs, "stored": stored}


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    names = list(rounds[0])
    rate = {name: [r[name]["jobs_per_s"] for r in rounds] for name in names}
    out: dict[str, Any] = {
        "jobs_per_s": {n: {"median": statistics.median(v), "min": min(v), "max": max(v)} for n, v in rate.items()},
        "ratios": {},
        "all_stored": all(r[name]["stored"] == r[name]["sent"] for r in rounds for name in names)}
    for label, (a, b) in PAIRS.items():
        if a in names and b in names:
            out["ratios"][label] = [x / y for x, y in zip(rate[a], rate[b], strict=True)]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="brokerbench enqueue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000,
                        help="jobs timed per contender and round (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1_000,
                        help="jobs per publish_many call of the batch contenders (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender, alternating (default %(default)s)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="comma-separated, of " + ", ".join(CONTENDERS) + " (default: all)")
    parser.add_argument("--out", type=Path, default=Path("reports/enqueue"),
                        help="folder for the results (default %(default)s)")
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    urls = {kind: find(kind).url for kind in sorted({KIND[c] for c in chosen})}
    rounds: list[dict[str, dict[str, Any]]] = []
    for round_ in range(args.rounds):
        rounds.append({})
        for name in chosen:
            r = rounds[-1][name] = run_one(name, urls[KIND[name]], args.jobs, args.batch, round_)
            missing = f"; only {r['stored']:,} of {r['sent']:,} in the queue" if r["stored"] != r["sent"] else ""
            print(f"round {round_ + 1}: {name:22s} {r['jobs_per_s']:10,.0f} jobs/s{missing}", flush=True)
    found = summarise(rounds)
    for label, ratio in found["ratios"].items():
        print(f"{label}: x{statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")
    described = {}
    for kind, url in urls.items():
        broker = registry.get(kind).open(url, queue="bb-enqueue-describe")
        described[kind] = broker.describe()
        broker.close()
    result = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": {"jobs": args.jobs, "batch": args.batch, "rounds": args.rounds, "warmup_jobs": WARMUP,
                           "payload_bytes": len(json.dumps(_job(0))),
                           "durability": "Redis as found (see environment); RabbitMQ persistent messages to a "
                                         "durable queue, confirms as each contender's name says"},
              "rounds": rounds, "summary": found, "environment": environment.capture(described)}
    path = results_files.write_named(result, args.out, "enqueue")
    print(f"results: {path}")
    return result
