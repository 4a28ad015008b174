"""Experiment: does RabbitMQ confirm a message that no queue took?

First run 2026-12-07 on a private RabbitMQ 3.10.8 node (reports/experiments/unroutable-20261207-060444.json,
quoted by docs/teaching/production.md, item 4): every expectation below held in both trials of
every mode, and the checks listed at the end held (every ``list_queues`` line parsed; the returns'
code was ``312 NO_ROUTE``; nothing was left undeleted).

Why: a publisher confirm means the broker took responsibility for a message, not that a queue
holds it. RabbitMQ's confirms guide: an unroutable message is confirmed once the exchange finds no
queue for it; with ``mandatory`` set, a ``basic.return`` comes before the ``basic.ack``. A producer
that publishes without ``mandatory`` and without an alternate exchange counts such a message as
accepted while no consumer will ever see it. Our AMQP adapter publishes every message mandatory
and gives its main exchange an alternate exchange (brokers/amqp/producer.py, topology.py).

How, on a private RabbitMQ node (``--shared``: the broker brokerbench finds, touching only objects
named after the trial, ``bb-unroutable-<random>-<n>``, as the tests name their queues): per trial,
a durable direct exchange of its own, with one durable "witness" queue bound by the key ``bound``.
The trial publishes N persistent messages with publisher confirms, one confirm awaited per
message (pika's ``BlockingChannel.confirm_delivery``), with the key ``nowhere``, which no binding
matches, in one of four modes:

* ``control``: the key ``bound`` instead, no mandatory: every message should reach the witness
  (proves the counting);
* ``plain``: no mandatory: expected N confirms, no return, nothing in any queue;
* ``mandatory``: expected N confirms and N returns (312 NO_ROUTE), nothing in any queue;
* ``alternate-exchange``: mandatory, and the exchange declared with an alternate exchange (a
  fanout with a "catch" queue), as our adapter does: expected N confirms, no return, N in the
  catch queue.

It counts confirms (acks and nacks), returns (with their reply codes) and, a second after the
last confirm, the messages in the witness and catch queues (passive declare) and, on a private
node, in every queue of the vhost (``rabbitmqctl list_queues``). Every object it declares is
deleted at the end of its trial (its queues also carry ``x-expires``, so a trial killed midway
leaves nothing behind for long); the private node is deleted at the end.

How pika reports it (pika 1.x, ``BlockingChannel.basic_publish`` in confirm mode): it returns
normally on an ack; raises ``UnroutableError`` (``.messages``: the returned messages) when the
broker returned the message and then acked it (pika raises it only after the ack arrived); and
raises ``NackError`` on a nack.

    python -m benchmarks.experiments.unroutable --out reports/experiments
    python -m benchmarks.experiments.unroutable --shared   # the RabbitMQ brokerbench finds, own objects only

It writes one JSON file (schema brokerbench.experiment.unroutable/1: settings, the broker's
version, the trials, the environment, as every results file) and prints a table.

To check on the first run: that ``rabbitmqctl list_queues --quiet --no-table-headers name
messages`` prints one tab-separated line per queue on the installed version (lines that do not
parse are kept in the results file, not counted); that ``exc.messages[i].method.reply_code`` is
where pika 1.x keeps the return's code.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pika
import pika.exceptions as pe

from brokers.instances import private_instance
from brokers.urls import redact

from ..harness import environment
from ..results import files as results_files

SCHEMA = "brokerbench.experiment.unroutable/1"
MODES = ("control", "plain", "mandatory", "alternate-exchange")
BOUND_KEY = "bound"      # the witness queue's binding key
UNBOUND_KEY = "nowhere"  # no binding matches it
QUEUE_EXPIRES_MS = 600_000  # a safety net: an unused queue of a trial that died deletes itself
SETTLE_S = 1.0           # between the last confirm and the counting


@dataclass
class Names:
    """The objects of one trial, all named after it (a broker shared with others sees only these)."""

    prefix: str

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.x"

    @property
    def witness(self) -> str:
        return f"{self.prefix}.witness"

    @property
    def catch_exchange(self) -> str:
        return f"{self.prefix}.ae"

    @property
    def catch_queue(self) -> str:
        return f"{self.prefix}.caught"


def _server(connection: pika.BlockingConnection) -> dict[str, str]:
    """Product and version as the broker announced them (read as brokers/amqp/broker.py does)."""
    props = connection._impl.server_properties  # noqa: SLF001 - pika keeps them only there
    return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in props.items()
            if k in ("product", "version")}


def _declare(ch: Any, names: Names, mode: str) -> None:
    queue_args = {"x-expires": QUEUE_EXPIRES_MS}
    ch.queue_declare(names.witness, durable=True, arguments=queue_args)
    exchange_args = None
    if mode == "alternate-exchange":
        ch.exchange_declare(names.catch_exchange, "fanout", durable=True)
        ch.queue_declare(names.catch_queue, durable=True, arguments=queue_args)
        ch.queue_bind(names.catch_queue, names.catch_exchange)
        exchange_args = {"alternate-exchange": names.catch_exchange}
    ch.exchange_declare(names.exchange, "direct", durable=True, arguments=exchange_args)
    ch.queue_bind(names.witness, names.exchange, routing_key=BOUND_KEY)


def _undo(connection: pika.BlockingConnection, names: Names, mode: str) -> list[str]:
    """Delete every object of the trial, each on a channel of its own (a failed delete closes its
    channel); what could not be deleted, in words. Never raises."""
    failed = []
    objects = [("queue", names.witness), ("exchange", names.exchange)]
    if mode == "alternate-exchange":
        objects += [("queue", names.catch_queue), ("exchange", names.catch_exchange)]
    for kind, name in objects:
        try:
            ch = connection.channel()
            if kind == "queue":
                ch.queue_delete(name)
            else:
                ch.exchange_delete(name)
            ch.close()
        except pe.AMQPError as exc:
            failed.append(f"{kind} {name}: {type(exc).__name__}")
    return failed


def _publish(ch: Any, exchange: str, key: str, messages: int, mandatory: bool) -> dict[str, Any]:
    """Publish ``messages`` persistent messages, each confirm awaited; count what pika reports."""
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    acked = nacked = returned = 0
    codes: Counter[str] = Counter()
    started = time.monotonic()
    for i in range(messages):
        body = json.dumps({"n": i, "pad": "x" * 180}).encode()
        try:
            ch.basic_publish(exchange, key, body, props, mandatory=mandatory)
            acked += 1
        except pe.UnroutableError as exc:  # returned, then acked (pika raises it after the ack)
            acked += 1
            returned += len(exc.messages)
            codes.update(_return_code(m) for m in exc.messages)
        except pe.NackError as exc:
            nacked += 1
            returned += len(exc.messages)
            codes.update(_return_code(m) for m in exc.messages)
    return {"acked": acked, "nacked": nacked, "returned": returned, "return_codes": dict(codes),
            "publish_s": round(time.monotonic() - started, 3)}


def _return_code(message: Any) -> str:
    method = getattr(message, "method", None)
    return f"{getattr(method, 'reply_code', '?')} {getattr(method, 'reply_text', '?')}"


def _ready(ch: Any, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def _all_queues(instance: Any) -> tuple[int | None, list[str]]:
    """Messages in every queue of the node's vhost (rabbitmqctl), and the lines that did not parse."""
    done = instance.ctl("list_queues", "--quiet", "--no-table-headers", "name", "messages", timeout=60)
    if done.returncode != 0:
        return None, [(done.stderr or done.stdout).strip()[:300]]
    total, odd = 0, []
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip().isdigit():
            total += int(parts[1])
        elif line.strip():
            odd.append(line[:200])
    return total, odd


def trial(url: str, instance: Any, mode: str, messages: int, index: int) -> dict[str, Any]:
    names = Names(f"bb-unroutable-{uuid.uuid4().hex[:8]}-{index}")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    out: dict[str, Any] = {"mode": mode, "messages": messages,
                           "routing_key": BOUND_KEY if mode == "control" else UNBOUND_KEY}
    try:
        ch = connection.channel()
        _declare(ch, names, mode)
        ch.confirm_delivery()
        out.update(_publish(ch, names.exchange, out["routing_key"], messages,
                            mandatory=mode in ("mandatory", "alternate-exchange")))
        time.sleep(SETTLE_S)
        out["in_witness"] = _ready(ch, names.witness)
        out["in_catch"] = _ready(ch, names.catch_queue) if mode == "alternate-exchange" else None
        if instance is not None:
            out["in_any_queue"], out["unparsed_lines"] = _all_queues(instance)
        else:
            out["in_any_queue"], out["unparsed_lines"] = None, []  # a shared broker: only our own queues
    except pe.AMQPError as exc:  # recorded, not hidden
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if connection.is_open:
            out["not_deleted"] = _undo(connection, names, mode)
            connection.close()
        else:  # the x-expires of its queues is the safety net; the exchanges stay (say which)
            out["not_deleted"] = [f"connection lost before the clean-up: exchange {names.exchange}"]
    return out


def _line(t: dict[str, Any]) -> str:
    if "error" in t:
        return f"{t['mode']:19s} FAILED: {t['error']}"
    anywhere = "-" if t.get("in_any_queue") is None else f"{t['in_any_queue']:,}"
    catch = "-" if t.get("in_catch") is None else f"{t['in_catch']:,}"
    return (f"{t['mode']:19s} {t['messages']:>6,} sent  {t['acked']:>6,} acked  {t['nacked']:>4,} nacked  "
            f"{t['returned']:>6,} returned  witness {t['in_witness']:>6,}  catch {catch:>6}  "
            f"all queues {anywhere:>6}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.unroutable",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages per trial (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="trials per mode (default %(default)s)")
    parser.add_argument("--shared", action="store_true",
                        help="use the RabbitMQ brokerbench finds (brokers.provision) instead of a private node: "
                             "only this experiment's own exchanges and queues are touched, then deleted")
    parser.add_argument("--out", type=Path, default=Path("reports/experiments"),
                        help="folder for the results (default %(default)s)")
    args = parser.parse_args(argv)
    instance = None
    if args.shared:
        from brokers.provision import find

        url, where = find("rabbitmq").url, "shared RabbitMQ (own exchanges and queues only, deleted after)"
    else:
        instance = private_instance("rabbitmq")
        instance.start()
        url, where = instance.url, "private RabbitMQ node, default settings"
    trials: list[dict[str, Any]] = []
    server: dict[str, str] = {}
    try:
        probe = pika.BlockingConnection(pika.URLParameters(url))
        server = _server(probe)
        probe.close()
        n = 0
        for _ in range(args.repeat):
            for mode in MODES:
                t = trial(url, instance, mode, args.messages, n)
                n += 1
                trials.append(t)
                print(_line(t), flush=True)
    finally:
        if instance is not None:
            instance.cleanup()
    result = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "status": "checked: its first run (2026-12-07) met every expectation of its docstring",
              "settings": {"messages": args.messages, "repeat": args.repeat, "modes": list(MODES),
                           "confirms": "each awaited (BlockingChannel.confirm_delivery)",
                           "persistent": True, "node": where, "url": redact(url)},
              "trials": trials,
              "environment": environment.capture({"rabbitmq": {"kind": "rabbitmq", **server}})}
    path = results_files.write_named(result, args.out, "unroutable")
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
