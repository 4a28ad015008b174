"""Experiment: are RabbitMQ's acknowledgements durable when the consumer receives nothing more?

Why: in the broker-crash scenario, RabbitMQ with persistent messages and confirms lost nothing
but ran 1,855-3,418 jobs twice on a classic queue, against 3-4 on a quorum queue. The guess to
test: a classic queue writes acks to disk lazily, so messages acked shortly before a crash come
back after the restart, while a quorum queue's acks go through its log before they count.

How, on a private RabbitMQ node (never the shared one): publish N persistent messages with
confirms to a durable queue of each type; consume and ack all of them, then close the
connection (the broker has every ack once the close is answered; the queue reports 0 ready);
wait ``T`` seconds; SIGKILL the node; restart it; record the count the queue reports and consume
what it delivers. Every message was acknowledged before the kill, so each one delivered again is
a job that would run twice. Repeated for several waits T.

    python -m benchmarks.experiments.acks_after_crash --out reports/experiments

It writes one JSON file (schema brokerbench.experiment.acks/1, with the environment it ran in, as
every results file) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pika

from brokers.instances import private_instance

from ..harness import environment
from ..results import files as results_files

SCHEMA = "brokerbench.experiment.acks/1"


def _channel(url: str) -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    return connection, connection.channel()


def _counts(url: str, queue: str) -> tuple[int, int]:
    """(ready, consumers) as a passive declare reports them."""
    connection, ch = _channel(url)
    try:
        ok = ch.queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    finally:
        connection.close()


def trial(instance: Any, queue_type: str, messages: int, wait_s: float, index: int) -> dict[str, Any]:
    url = instance.url
    queue = f"bb-acks-{queue_type}-{index}"
    connection, ch = _channel(url)
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})
    ch.confirm_delivery()
    body = json.dumps({"pad": "x" * 180}).encode()
    for _ in range(messages):
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    ch.basic_qos(prefetch_count=100)
    acked = 0
    for method, _props, _body in ch.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)
        acked += 1
        if acked == messages:
            break
    ch.cancel()
    connection.close()  # acks are sent before the close; the broker has them all once it answers
    ready, _ = _counts(url, queue)
    time.sleep(wait_s)
    instance.kill()
    instance.start()
    reported, back = _delivered_again(url, queue)
    connection, ch = _channel(url)
    ch.queue_delete(queue)
    connection.close()
    return {"queue_type": queue_type, "messages": messages, "acked": acked, "ready_before_kill": ready,
            "wait_s": wait_s, "count_after_restart": reported, "back_after_restart": back}


def _delivered_again(url: str, queue: str) -> tuple[int | None, int]:
    """After the restart: the count the queue first reports, and the messages a consumer really
    gets (until none comes for 3 s): the second is what would run twice. A node still starting
    (or a quorum queue still electing itself) refuses for a while: tried again for up to 60 s."""
    deadline = time.monotonic() + 60
    reported: int | None = None
    got = 0
    while True:
        connection = None
        try:
            if reported is None:
                reported, _ = _counts(url, queue)
            connection, ch = _channel(url)
            for method, _props, _body in ch.consume(queue, inactivity_timeout=3):
                if method is None:
                    return reported, got
                ch.basic_ack(method.delivery_tag)
                got += 1
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            if connection is not None and connection.is_open:
                connection.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.acks_after_crash",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per trial (default %(default)s)")
    parser.add_argument("--waits", default="0,0.5,2,10",
                        help="comma-separated seconds between the last ack and the kill (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="trials per queue type and wait (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("reports/experiments"),
                        help="folder for the results (default %(default)s)")
    args = parser.parse_args(argv)
    waits = [float(w) for w in args.waits.split(",")]
    instance = private_instance("rabbitmq")
    instance.start()
    trials = []
    try:
        n = 0
        for _ in range(args.repeat):
            for wait_s in waits:
                for queue_type in ("classic", "quorum"):
                    try:
                        t = trial(instance, queue_type, args.messages, wait_s, n)
                    except pika.exceptions.AMQPError as exc:  # recorded, not hidden: the node may be at fault
                        t = {"queue_type": queue_type, "messages": args.messages, "wait_s": wait_s,
                             "error": f"{type(exc).__name__}: {exc}"}
                        print(f"{queue_type:8s} wait {wait_s:4.1f} s: FAILED after the restart: {t['error']}")
                        trials.append(t)
                        n += 1
                        continue
                    n += 1
                    trials.append(t)
                    print(f"{queue_type:8s} wait {wait_s:4.1f} s: {t['acked']:,} acked (ready before the kill "
                          f"{t['ready_before_kill']}); after the restart the queue reported "
                          f"{t['count_after_restart']} and delivered {t['back_after_restart']} again", flush=True)
    finally:
        instance.cleanup()
    result = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": {"messages": args.messages, "waits_s": waits, "repeat": args.repeat,
                           "node": "private RabbitMQ node, default settings"},
              "trials": trials, "environment": environment.capture()}
    path = results_files.write_named(result, args.out, "acks-after-crash")
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
