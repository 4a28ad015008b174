"""Plain pika as a role program: the loop most pika users write, with nothing of ours.

Producer: one ``BlockingConnection`` (pika sets TCP_NODELAY itself), a channel in confirm mode
unless the level turns confirms off, one ``basic_publish`` per job, each waiting for its own
confirm (a blocking channel cannot keep a window open: the slowest of the confirm strategies),
persistent messages unless the level says otherwise. Worker: ``basic_qos(prefetch)``,
``basic_consume``, the handler run inline in the delivery callback (so a long job holds the
connection's I/O, heartbeats included: the classic pika pitfall), one ``basic_ack`` per
message. A failed job is published again with its attempts made in a header, then acked.

pika has no reconnection; the role has the plain loop an application writes: on a lost
connection, connect again every 0.5 s for up to ``reconnect_for_s`` (10 s by default). A
publish whose confirm had not come is in doubt; the jobs of its call not yet sent are refused
(nothing of them reached the broker); an ack that cannot leave counts lost_lock.

    python -m benchmarks.contenders.python.pika_role     (then the role protocol on stdin/stdout)
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_module
import time
import uuid
from typing import Any, Callable

from . import role_io

NAME = "pika-plain"
OPTIONS = ("amqp_queue", "persistent", "confirms", "reconnect_for_s")
ATTEMPTS, MADE = "bb-attempts", "bb-attempts-made"
RETRY_EVERY_S = 0.5


def connect(url: str, window_s: float, first: bool) -> Any:
    """A connection, trying again every RETRY_EVERY_S for up to ``window_s`` (the first one
    fails at once: a wrong URL or password must not wait)."""
    import pika

    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": f"brokerbench:pika-plain:{os.getpid()}"}
    deadline = time.monotonic() + window_s
    while True:
        try:
            return pika.BlockingConnection(params)
        except pika.exceptions.AMQPConnectionError as exc:
            if first or time.monotonic() >= deadline:
                role_io.fail(f"{'cannot connect' if first else f'no connection again within {window_s:g} s'}: "
                             f"{exc!r}")
            time.sleep(RETRY_EVERY_S)


def producer(setup: dict[str, Any], lines: role_io.DirectLines) -> None:
    import pika

    options = setup.get("options") or {}
    queue = options.get("amqp_queue") or role_io.fail(f"{NAME} needs the queue's name (option amqp_queue)")
    confirms = options.get("confirms", "each") != "off"
    window = float(options.get("reconnect_for_s", 10.0))
    delivery_mode = 2 if options.get("persistent", True) else 1
    state: dict[str, Any] = {"conn": connect(setup["url"], window, True)}

    def channel() -> Any:
        if state.get("ch") is None or not state["ch"].is_open:
            if state["conn"] is None or not state["conn"].is_open:
                state["conn"] = connect(setup["url"], window, False)
            state["ch"] = state["conn"].channel()
            if confirms:
                state["ch"].confirm_delivery()
        return state["ch"]

    channel()
    role_io.ready(role_io.client_record(NAME, "pika"))
    while (line := lines.get()) is not None:
        message = json.loads(line)
        if message["type"] == "stop":
            _quietly(lambda: state["conn"].close())
            return
        if message["type"] != "publish":
            continue
        accepted: tuple[list[int], list[str]] = ([], [])
        failed: dict[str, tuple[list[int], str]] = {}
        broken = False
        for job in message["jobs"]:
            if broken:   # the connection went with an earlier job of this call: not sent
                failed.setdefault("refused", ([], "not sent: the connection was lost earlier in this call"))[0] \
                    .append(job["seq"])
                continue
            job_id = job.get("id") or uuid.uuid4().hex
            props = pika.BasicProperties(delivery_mode=delivery_mode, message_id=job_id, type=job["name"],
                                         content_type="application/json",
                                         headers={ATTEMPTS: job.get("attempts", 1), MADE: 0})
            try:
                channel().basic_publish("", queue, json.dumps(job["data"]).encode(), props)
            except pika.exceptions.NackError as exc:
                failed.setdefault("refused", ([], f"nack: {exc!r}"))[0].append(job["seq"])
            except Exception as exc:  # noqa: BLE001 - no confirm came (pika raises more than AMQPError): may be queued
                failed.setdefault("in_doubt", ([], repr(exc)[:300]))[0].append(job["seq"])
                broken = True
                state["ch"] = None
                if not _alive(state):
                    state["conn"] = None
            else:
                accepted[0].append(job["seq"])
                accepted[1].append(job_id)
        if accepted[0]:
            role_io.send({"type": "accepted", "seqs": accepted[0], "ids": accepted[1], "t_ns": time.monotonic_ns()})
        for fate, (seqs, why) in failed.items():
            role_io.send({"type": "failed", "seqs": seqs, "fate": fate, "error": why})
    os._exit(0)   # the harness is gone


def _alive(state: dict[str, Any]) -> bool:
    conn = state.get("conn")
    return conn is not None and conn.is_open


def worker(setup: dict[str, Any], lines: queue_module.Queue) -> None:
    import pika

    options = setup.get("options") or {}
    queue = options.get("amqp_queue") or role_io.fail(f"{NAME} needs the queue's name (option amqp_queue)")
    window = float(options.get("reconnect_for_s", 10.0))
    prefetch = int(setup.get("prefetch") or setup.get("concurrency") or 1)
    cpu_share = setup.get("cpu_share") or {}
    report = role_io.empty_report()

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        start = time.monotonic_ns()
        headers = dict(props.headers or {})
        made, attempts = int(headers.get(MADE, 0)), int(headers.get(ATTEMPTS, 1))
        data, error = None, None
        try:
            data = json.loads(body)
            role_io.perform(props.type or "", data, cpu_share)
        except Exception as exc:  # noqa: BLE001 - the job failed (or is not JSON)
            error = exc
        final = error is None or data is None or made + 1 >= attempts
        if method.redelivered:
            report["redelivered"] += 1
        role_io.send({"type": "ran", "id": str(props.message_id or ""), "name": props.type or "",
                      "trace": role_io.trace_of(data), "start_ns": start, "end_ns": time.monotonic_ns(),
                      "redelivered": bool(method.redelivered), "attempts_made": made, "final": final})
        try:
            if not final:
                headers[MADE] = made + 1
                ch.basic_publish("", queue, body, pika.BasicProperties(
                    delivery_mode=props.delivery_mode, message_id=props.message_id, type=props.type,
                    content_type=props.content_type, headers=headers))
            ch.basic_ack(method.delivery_tag)
        except (pika.exceptions.AMQPError, OSError):   # requeued by the broker: this run's ack never left
            report["lost_lock"] += 1
            return
        report["completed" if error is None else "failed" if final else "retried"] += 1

    def open_channel(conn: Any, consuming: bool) -> Any:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=prefetch)
        if consuming:
            ch.basic_consume(queue, on_message)
        return ch

    def reopen(consuming: bool) -> tuple[Any, Any]:
        """The plain reconnect loop: a new connection and channel, consuming again if it was,
        trying for up to the window (a broker just restarted may still refuse the channel)."""
        deadline = time.monotonic() + window
        while True:
            fresh = connect(setup["url"], max(deadline - time.monotonic(), 0.0), False)
            try:
                return fresh, open_channel(fresh, consuming)
            except Exception as exc:  # noqa: BLE001 - the broker is not ready yet: again
                _quietly(fresh.close)
                if time.monotonic() >= deadline:
                    role_io.fail(f"no channel again within {window:g} s: {exc!r}")
                time.sleep(RETRY_EVERY_S)

    conn = connect(setup["url"], window, True)
    ch = open_channel(conn, False)
    role_io.ready(role_io.client_record(NAME, "pika"))
    consuming = False
    while True:
        try:
            line = lines.get_nowait()
        except queue_module.Empty:
            line = ""
        if line is None:
            os._exit(0)   # the harness is gone: settle nothing more
        if line:
            kind = json.loads(line)["type"]
            if kind == "consume" and not consuming:
                consuming = True
                ch.basic_consume(queue, on_message)
            elif kind == "stop":
                _quietly(ch.close)
                _quietly(conn.close)
                role_io.send({"type": "done", "report": report})
                return
            continue
        try:
            conn.process_data_events(time_limit=0.05)
        except Exception:  # noqa: BLE001 - a dying socket makes pika raise more than AMQPError (ValueError too)
            _quietly(conn.close)
            conn, ch = reopen(consuming)
            report["reconnects"] += 1


def _quietly(step: Callable[[], Any]) -> None:
    try:
        step()
    except Exception:  # noqa: BLE001 - closing what may already be gone
        pass


def main() -> None:
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    setup = role_io.read_setup(role_io.DirectLines(), NAME, OPTIONS)
    if not str(setup["url"]).startswith(("amqp://", "amqps://")):
        role_io.fail(f"{NAME} takes an amqp:// URL, not {str(setup['url']).split(':')[0]}://")
    if setup["role"] == "producer":  # waits for each line, then for each confirm: reads on its own thread
        producer(setup, role_io.DirectLines())
    else:  # polls its connection between lines: a thread reads them
        worker(setup, role_io.stdin_lines())


if __name__ == "__main__":
    main()
