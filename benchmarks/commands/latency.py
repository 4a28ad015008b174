"""Latency benchmark: end to end, one producer at a fixed rate, one worker, no-op jobs; our
adapters side by side with the reference clients, in alternating rounds.

  bullmq-official  the official BullMQ Python package: Queue.add one at a time, Worker (asyncio),
                   concurrency C
  redis-ours       our BullMQ-style Redis producer (one job per call) and worker, concurrency C
  pika-plain       what most pika users write: basic_publish with confirms (each waited for),
                   persistent messages, a durable queue; basic_consume with prefetch P, one ack each
  amqp-ours        our AMQP producer (persistent, windowed confirms) and worker, prefetch P

Each contender runs as two processes (producer, worker) on the same brokers. The producer sends
job i at t0 + i/rate and writes that intended time (CLOCK_MONOTONIC, one clock for every process
of a host) into the job; the worker records now - intended when its handler runs, in an HDR
histogram, so a producer that falls behind cannot hide its delay. The publish call's own
duration is recorded too. Durability: the brokers as found (say which in the output); both
Redis contenders share one Redis, both AMQP contenders one RabbitMQ node.

    brokerbench latency --rate 1000 --seconds 10 --rounds 3
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
from functools import partial
from pathlib import Path
from typing import Any, Callable

from brokers import registry
from brokers.provision import find

from ..harness import environment
from ..harness.metrics import decode, encode, new_histogram, printable, record_us, summary
from ..results import files as results_files
from ..results.percentiles import of_summary
from .drain import pika_consume

SCHEMA = "brokerbench.latency/1"
CHILD_URL = "BROKERBENCH_CHILD_URL"  # not on the command line, which every user of the host can read
CONTENDERS = ("bullmq-official", "redis-ours", "pika-plain", "amqp-ours")
KIND = {"bullmq-official": "redis", "redis-ours": "redis", "pika-plain": "rabbitmq", "amqp-ours": "rabbitmq"}
# How our workers take the width, as in the drain benchmark: Redis runs that many jobs at once;
# the AMQP worker runs them inline and lets RabbitMQ push that many ahead.
OURS_WIDTH = {"redis-ours": lambda w: {"concurrency": w}, "amqp-ours": lambda w: {"concurrency": 1, "prefetch": w}}
PAIRS = {"redis-ours / bullmq-official": ("redis-ours", "bullmq-official"),
         "amqp-ours / pika-plain": ("amqp-ours", "pika-plain")}
# A contender fell behind the rate when its producer sent slower than this share of it, or its
# worker finished its last job later than KEPT_LATE_S after that job was due: its end-to-end
# figures then measure its own backlog (each job's clock starts at its intended send time);
# the output and the report say so.
KEPT_RATE = 0.98
KEPT_LATE_S = 0.5  # nor may the worker finish later than this after the last job was due
PAYLOAD = {"userId": 481516, "projectId": "proj_8c2f4e1a", "chatId": 2342, "source": "telegram",
           "variables": {"lang": "ru", "step": "checkout", "cart_items": 3, "utm": "tg_channel_spring"}}


def _job(i: int, intended_ns: int) -> dict[str, Any]:
    return {**PAYLOAD, "i": i, "t": intended_ns}


def _pace(rate: float, jobs: int, t0: int, send: Callable[[int, int], None]) -> tuple[Any, int]:
    """Call ``send(i, intended_ns)`` at t0 + i/rate; returns the publish-call histogram and the
    time the last call ended (ns)."""
    hist = new_histogram()
    for i in range(jobs):
        intended = t0 + int(i * 1e9 / rate)
        wait = (intended - time.monotonic_ns()) / 1e9
        if wait > 0:
            time.sleep(wait)
        start = time.monotonic_ns()
        send(i, intended)
        record_us(hist, time.monotonic_ns() - start)
    return hist, time.monotonic_ns()


# ---------------------------------------------------------------------------------- producers
def _produce_ours(name: str, url: str, queue: str, rate: float, jobs: int, t0: int) -> Any:
    broker = registry.get(KIND[name]).open(url, queue=queue)
    with broker.producer() as producer:
        paced = _pace(rate, jobs, t0, lambda i, t: producer.publish("user_variables_update", _job(i, t)))
    broker.close()
    return paced


def _produce_pika_plain(url: str, queue: str, rate: float, jobs: int, t0: int) -> Any:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    persistent = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def send(i: int, intended: int) -> None:
        channel.basic_publish("", queue, json.dumps(_job(i, intended)).encode(), persistent)

    paced = _pace(rate, jobs, t0, send)
    connection.close()
    return paced


def _produce_bullmq_official(url: str, queue: str, rate: float, jobs: int, t0: int) -> Any:
    from bullmq import Queue

    async def main() -> Any:
        q = Queue(queue, {"connection": url})
        hist = new_histogram()
        for i in range(jobs):
            intended = t0 + int(i * 1e9 / rate)
            wait = (intended - time.monotonic_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            start = time.monotonic_ns()
            await q.add("user_variables_update", _job(i, intended), {"removeOnComplete": True})
            record_us(hist, time.monotonic_ns() - start)
        ended = time.monotonic_ns()
        await q.close()
        return hist, ended

    return asyncio.run(main())


# ------------------------------------------------------------------------------------ workers
def _consume_ours(name: str, url: str, queue: str, jobs: int, width: int, seen: Callable[[int], None]) -> None:
    broker = registry.get(KIND[name]).open(url, queue=queue)
    worker = broker.worker(lambda job: seen(job.data["t"]), **OURS_WIDTH[name](width))
    print("ready", flush=True)
    worker.run(max_jobs=jobs, timeout=120)
    broker.close()


def _consume_pika_plain(url: str, queue: str, jobs: int, width: int, seen: Callable[[int], None]) -> None:
    pika_consume(url, queue, width, jobs, lambda body: seen(json.loads(body)["t"]),
                 starting=lambda: print("ready", flush=True))


def _consume_bullmq_official(url: str, queue: str, jobs: int, width: int, seen: Callable[[int], None]) -> None:
    from bullmq import Worker

    async def main() -> None:
        done = asyncio.Event()
        count = 0

        async def process(job: Any, token: str) -> None:
            nonlocal count
            seen(job.data["t"])
            count += 1
            if count >= jobs:
                done.set()

        worker = Worker(queue, process, {"connection": url, "concurrency": width, "removeOnComplete": {"count": 0}})
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), timeout=120)
        await worker.close()

    asyncio.run(main())


PRODUCERS = {"bullmq-official": _produce_bullmq_official, "redis-ours": partial(_produce_ours, "redis-ours"),
             "pika-plain": _produce_pika_plain, "amqp-ours": partial(_produce_ours, "amqp-ours")}
WORKERS = {"bullmq-official": _consume_bullmq_official, "redis-ours": partial(_consume_ours, "redis-ours"),
           "pika-plain": _consume_pika_plain, "amqp-ours": partial(_consume_ours, "amqp-ours")}


def child_main(args: argparse.Namespace) -> None:
    import logging

    logging.getLogger("pika").setLevel(logging.WARNING)
    url = os.environ[CHILD_URL]
    if args.child_role == "worker":
        hist = new_histogram()
        last = [0]

        def seen(intended_ns: int) -> None:
            """A job ran: its latency from its intended send time, and when (the worker's own
            shutdown afterwards is not the backlog's)."""
            last[0] = now = time.monotonic_ns()
            record_us(hist, now - intended_ns)

        WORKERS[args.child](url, args.queue, args.jobs, args.width, seen)
        print(json.dumps({"end_to_end": encode(hist), "finished_ns": last[0]}), flush=True)
    else:
        hist, ended = PRODUCERS[args.child](url, args.queue, args.rate, args.jobs, args.t0)
        print(json.dumps({"publish": encode(hist), "sent_per_s": args.jobs / max((ended - args.t0) / 1e9, 1e-9)}),
              flush=True)


# -------------------------------------------------------------------------------------- parent
def _queue(name: str, round_: int) -> str:
    return f"bb-latency-{name}-{os.getpid()}-{round_}"


def _prepare(name: str, url: str, queue: str) -> None:
    """Empty queue; for the plain pika pair, the durable queue it publishes to."""
    if name == "pika-plain":
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.channel().queue_declare(queue, durable=True)
        connection.close()


def cleanup_queue(url: str, queue: str, kind: str | None) -> None:
    """Remove a benchmark's queue: through the adapter of ``kind``, or (``None``) the plain AMQP
    queue a plain pika contender declared."""
    if kind is None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.channel().queue_delete(queue)
        connection.close()
        return
    broker = registry.get(kind).open(url, queue=queue)
    try:
        broker.remove()
    finally:
        broker.close()


def _spawn(name: str, role: str, url: str, queue: str, args: argparse.Namespace, t0: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.commands.latency", "--child", name, "--child-role", role,
         "--queue", queue, "--rate", str(args.rate), "--jobs", str(int(args.rate * args.seconds)),
         "--width", str(args.width), "--t0", str(t0)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, CHILD_URL: url})


def run_one(name: str, url: str, args: argparse.Namespace, round_: int) -> dict[str, Any]:
    queue = _queue(name, round_)
    _prepare(name, url, queue)
    worker = _spawn(name, "worker", url, queue, args)
    try:
        line = worker.stdout.readline() if worker.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"{name} worker did not start: {line}{worker.stderr.read() if worker.stderr else ''}")
        t0 = time.monotonic_ns() + 1_500_000_000
        producer = _spawn(name, "producer", url, queue, args, t0=t0)
        p_out, p_err = producer.communicate(timeout=args.seconds + 120)
        w_out, w_err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
        cleanup_queue(url, queue, None if name == "pika-plain" else KIND[name])
    if producer.returncode or worker.returncode:
        raise RuntimeError(f"{name} failed:\n{p_err[-2000:]}\n{w_err[-2000:]}")
    worked = json.loads(w_out.strip().splitlines()[-1])
    produced = json.loads(p_out.strip().splitlines()[-1])
    sent_per_s = produced["sent_per_s"]
    # How long after the last job's intended send time the worker ran its last job: the backlog left.
    late_s = (worked["finished_ns"] - t0) / 1e9 - int(args.rate * args.seconds) / args.rate
    return {"contender": name, "end_to_end_ms": summary(decode(worked["end_to_end"])),
            "publish_ms": summary(decode(produced["publish"])), "sent_per_s": sent_per_s,
            "worker_finished_late_s": round(late_s, 3),
            "kept_rate": sent_per_s >= KEPT_RATE * args.rate and late_s <= KEPT_LATE_S}


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    names = list(rounds[0])
    out: dict[str, Any] = {"end_to_end_ms": {}, "publish_ms": {}, "ratios": {}}
    for figure in ("end_to_end_ms", "publish_ms"):
        for name in names:
            out[figure][name] = {p: {"median": statistics.median(r[name][figure][p] for r in rounds),
                                     "min": min(r[name][figure][p] for r in rounds),
                                     "max": max(r[name][figure][p] for r in rounds)}
                                 for p in ("p50", "p99")}
    # Contenders whose producer fell behind the rate in some round (older files lack the field).
    out["fell_behind"] = {name: {"sent_per_s": min(r[name]["sent_per_s"] for r in rounds),
                                 "worker_finished_late_s": max(r[name]["worker_finished_late_s"] for r in rounds)}
                          for name in names if not all(r[name].get("kept_rate", True) for r in rounds)}
    for label, (a, b) in PAIRS.items():
        if a in names and b in names:
            out["ratios"][label] = {p: [r[a]["end_to_end_ms"][p] / r[b]["end_to_end_ms"][p] for r in rounds]
                                    for p in ("p50", "p99")}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="brokerbench latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="jobs/s the producer sends (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of sending per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender, alternating (default %(default)s)")
    parser.add_argument("--width", type=int, default=50,
                        help="Redis workers' concurrency and AMQP consumers' prefetch (default %(default)s)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="comma-separated, of " + ", ".join(CONTENDERS) + " (default: all)")
    parser.add_argument("--out", type=Path, default=Path("reports/latency"),
                        help="folder for the results (default %(default)s)")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--child-role", choices=("worker", "producer"), help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return {}
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    urls = {kind: find(kind).url for kind in sorted({KIND[c] for c in chosen})}
    rounds = []
    for round_ in range(args.rounds):
        rounds.append({name: run_one(name, urls[KIND[name]], args, round_) for name in chosen})
        for name, r in rounds[-1].items():
            e = r["end_to_end_ms"]
            behind = "" if r["kept_rate"] else (f"; FELL BEHIND: sent {r['sent_per_s']:,.0f}/s of {args.rate:,.0f}/s,"
                                                 f" done {r['worker_finished_late_s']:.1f} s after the last was due")
            print(f"round {round_ + 1}: {name:16s} end to end {of_summary(e, 'p50')}, {of_summary(e, 'p99')}; "
                  f"publish {of_summary(r['publish_ms'], 'p99')}{behind}", flush=True)
    found = summarise(rounds)
    for name, b in found["fell_behind"].items():
        print(f"{name} fell behind the rate (sent as low as {b['sent_per_s']:,.0f} jobs/s of {args.rate:,.0f}; done up "
              f"to {b['worker_finished_late_s']:.1f} s late): its latency is its own backlog; compare at a rate it "
              f"keeps (--rate)")
    fewest = min(r[name]["end_to_end_ms"].get("count", 0) for r in rounds for name in r)
    for label, ratio in found["ratios"].items():  # a percentile's ratio only where every round has its samples
        print(f"{label}: " + ", ".join(
            f"{p} x{statistics.median(ratio[p]):.3g} ({min(ratio[p]):.3g}-{max(ratio[p]):.3g})" if printable(q, fewest)
            else f"{p}: too few samples (n={fewest:,} in a round)" for p, q in (("p50", 50), ("p99", 99))))
    described = {}
    for kind, url in urls.items():
        broker = registry.get(kind).open(url, queue="bb-latency-describe")
        described[kind] = broker.describe()
        broker.close()
    result = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": {"rate": args.rate, "seconds": args.seconds, "rounds": args.rounds, "width": args.width,
                           "payload_bytes": len(json.dumps(_job(0, 0))),
                           "durability": "brokers as found: Redis as configured (see environment), RabbitMQ "
                                         "persistent messages with publisher confirms on both AMQP contenders"},
              "rounds": rounds, "summary": found, "environment": environment.capture(described)}
    path = results_files.write_named(result, args.out, "latency")
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
