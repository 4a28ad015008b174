"""Experiment: what happens to a job that outlives RabbitMQ's consumer_timeout, and what does our
worker do then?

First run 2026-12-07 on a private RabbitMQ 3.10.8 node (reports/experiments/consumer-timeout-20261207-060812.json):
the 3 s timeout closed the channel after 60 s (the node's once-a-minute check; no tick setting
was needed); pika's ``process_data_events`` returned rather than raised; the late ack raised
``ChannelWrongStateError``; the node's log named the timeout. Our worker behaved as read below:
it noticed the closed channel only at the late ack (30 s later), and counted the run whose ack
failed as completed: a defect, fixed in commit ffa1be6. Run again after the fix
(consumer-timeout-20261207-111041.json, quoted by docs/teaching/production.md, item 2): the
worker reopened its channel within 0.2 s of the close, ran the redelivered job at once, and
counted the first run lost_lock.

Why: RabbitMQ closes the channel of a consumer that holds a delivery unacknowledged for longer
than ``consumer_timeout`` (PRECONDITION_FAILED, 406) and requeues every unacked delivery of that
channel: RabbitMQ's counterpart of a BullMQ lock that expired, except that it is never renewed,
so a job merely longer than the timeout runs twice. Our AMQP adapter sets no timeout of its own.
Read from its code before the fix: pika's ``BlockingConnection.process_data_events`` does not
raise when the broker closes a channel, so our worker noticed only at its next operation on that
channel (the late job's ack), counted that run as completed before the ack failed, and took no
job meanwhile. This experiment checked that reading; the worker now checks for a channel the
broker closed after every I/O step.

How, on a private RabbitMQ node (never a shared one) started with ``consumer_timeout = T`` ms
(default 3000) in its rabbitmq.conf (``private_instance("rabbitmq", {"consumer_timeout": ...})``:
the instance writes its config as ``key = value`` lines, brokers/amqp/server.py), per repetition:

* ``pika``: one persistent message on a durable queue of its own; a plain pika consumer (prefetch
  1, manual acks) whose handler runs on a thread of its own for HOLD s while the connection's
  thread keeps doing I/O (so missed heartbeats cannot be the cause), and hands its ack back with
  ``add_callback_threadsafe``. Recorded: when the channel closed and with what code and text;
  whether the first run's late ack was refused; and, as another consumer would, a second channel
  that consumes the requeued job at once: whether it came back with ``redelivered`` set, when,
  and whether both runs overlapped.
* ``ours``: the same job through our adapter (``RabbitMQBroker``, a worker at concurrency 2, so
  handlers run on threads and heartbeats go on), the handler holding HOLD s on its first run only.
  Recorded: every run; when the worker's channel was first seen closed (a peek at the worker's
  private ``_ch``, polled every 0.25 s); the warnings the worker logged and when; its report
  (completed, lost_lock, redelivered, reconnects); what is left in the queue.

Timing: the node evaluates the timeout about once a minute (RabbitMQ's guide: values under a
minute are not supported; RabbitMQ's own test suites lower the ``channel_tick_interval``
application setting), so a 3 s timeout fires some 3-63 s after the delivery. HOLD (default 90 s)
must exceed that; a trial takes about HOLD + 30 s, both trials of a repetition about 4 minutes,
plus the node's start.

    python -m benchmarks.experiments.consumer_timeout --out reports/experiments

It writes one JSON file (schema brokerbench.experiment.consumer-timeout/1: settings, the broker's
version, the trials, the node's log lines about the timeout, the environment) and prints a table.

To check on the first run: that the installed RabbitMQ enforces a timeout under a minute at all
(if no channel closes within HOLD, the rows say so: raise ``--timeout-ms`` to 60000 and ``--hold``
to 150, or give the instance a hook for ``channel_tick_interval`` in the advanced.config that
brokers/amqp/server.py writes); that pika's ``process_data_events`` returns rather than raises
after the broker closed a channel; which exception a late ``basic_ack`` on the closed channel
raises; that the node's log names the timeout in words this module greps for (``LOG_WORDS``).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pika
import pika.exceptions as pe

from brokers.instances import private_instance

from ..harness import environment
from ..results import files as results_files

SCHEMA = "brokerbench.experiment.consumer-timeout/1"
LOG_WORDS = ("acknowledgement", "ack timed out", "consumer_timeout")  # node log lines worth keeping
POLL_S = 0.25


class _Clock:
    """Seconds since the trial started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.t0, 2)


class _Notes(logging.Handler):
    """The warnings a logger emits, with when (on the trial's clock)."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__(logging.WARNING)
        self.clock = clock
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append({"at_s": self.clock(), "text": record.getMessage()[:300]})


def _server(url: str) -> dict[str, str]:
    """Product and version as the broker announced them (read as brokers/amqp/broker.py does)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        props = connection._impl.server_properties  # noqa: SLF001 - pika keeps them only there
        return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in props.items()
                if k in ("product", "version")}
    finally:
        connection.close()


def _overlap(runs: list[dict[str, Any]]) -> bool | None:
    """Whether the second run started before the first one finished (None: fewer than two runs)."""
    if len(runs) < 2:
        return None
    return runs[1]["started_s"] < runs[0].get("finished_s", float("inf"))


def pika_trial(url: str, hold_s: float, wait_s: float, index: int) -> dict[str, Any]:
    """A plain pika consumer with a handler longer than the timeout (see the module's text)."""
    queue = f"bb-ctimeout-pika-{uuid.uuid4().hex[:8]}-{index}"
    at = _Clock()
    runs: list[dict[str, Any]] = []
    closed: dict[str, Any] = {}
    connection = pika.BlockingConnection(pika.URLParameters(url))
    out: dict[str, Any] = {"consumer": "pika, handler on its own thread, I/O kept going", "hold_s": hold_s}
    try:
        ch = connection.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", queue, b'{"job": "slow"}', pika.BasicProperties(delivery_mode=2))

        def on_close(_channel: Any, reason: BaseException) -> None:
            closed.update(at_s=at(), code=getattr(reason, "reply_code", None),
                          text=str(getattr(reason, "reply_text", reason))[:300])

        def late_ack(channel: Any, tag: int, run: dict[str, Any]) -> None:
            try:
                channel.basic_ack(tag)
                run["ack"] = "sent"
            except pe.AMQPError as exc:  # the channel the broker closed: the ack cannot go
                run["ack"] = f"refused: {type(exc).__name__}"

        def slow(channel: Any, method: Any, _props: Any, _body: bytes) -> None:
            run = {"run": len(runs) + 1, "channel": "first", "redelivered": method.redelivered,
                   "started_s": at()}
            runs.append(run)

            def work() -> None:
                time.sleep(hold_s)  # stands for a job longer than the timeout
                run["finished_s"] = at()
                connection.add_callback_threadsafe(lambda: late_ack(channel, method.delivery_tag, run))

            threading.Thread(target=work, daemon=True, name="slow-job").start()

        def again(channel: Any, method: Any, _props: Any, _body: bytes) -> None:
            run = {"run": len(runs) + 1, "channel": "second", "redelivered": method.redelivered,
                   "started_s": at()}
            runs.append(run)
            channel.basic_ack(method.delivery_tag)  # a quick job this time
            run.update(finished_s=at(), ack="sent")

        ch.basic_qos(prefetch_count=1)
        ch._impl.add_on_close_callback(on_close)  # noqa: SLF001 - as brokers/amqp/worker.py does
        ch.basic_consume(queue, slow)
        second = None
        deadline = time.monotonic() + hold_s + wait_s
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.5)
            if closed and second is None:  # another consumer takes the requeued job at once
                second = connection.channel()
                second.basic_qos(prefetch_count=1)
                second.basic_consume(queue, again)
            first_done = bool(runs) and "ack" in runs[0]
            if first_done and (not closed or len(runs) > 1):
                break
        check = connection.channel()
        out["left_in_queue"] = check.queue_declare(queue, passive=True).method.message_count
        check.queue_delete(queue)
    except pe.AMQPError as exc:  # recorded, not hidden
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if connection.is_open:
            connection.close()
    out.update(channel_closed_at_s=closed.get("at_s"), close_code=closed.get("code"),
               close_text=closed.get("text"), runs=runs, ran=len(runs), ran_at_once=_overlap(runs))
    return out


def ours_trial(url: str, hold_s: float, wait_s: float, index: int) -> dict[str, Any]:
    """The same job through our adapter's worker (see the module's text)."""
    from brokers.amqp.broker import RabbitMQBroker

    at = _Clock()
    runs: list[dict[str, Any]] = []
    guard = threading.Lock()

    def handle(job: Any) -> Any:
        with guard:
            run = {"run": len(runs) + 1, "redelivered": job.redelivered, "started_s": at()}
            runs.append(run)
        if run["run"] == 1:
            time.sleep(hold_s)  # only the first run is long: a second one would time out as well
        run["finished_s"] = at()
        return {"run": run["run"]}

    notes = _Notes(at)
    worker_log = logging.getLogger("brokers.amqp.worker")
    out: dict[str, Any] = {"consumer": "ours: AmqpWorker, concurrency 2 (handlers on threads)", "hold_s": hold_s}
    try:
        broker = RabbitMQBroker(url, queue=f"bb-ctimeout-{uuid.uuid4().hex[:8]}-{index}")
    except Exception as exc:  # noqa: BLE001 - recorded, not hidden
        out.update(error=f"{type(exc).__name__}: {exc}", worker_warnings=[], runs=[], ran=0, ran_at_once=None)
        return out
    worker_log.addHandler(notes)
    try:
        with broker.producer() as producer:
            producer.publish("slow_job", {"hold_s": hold_s})
        worker = broker.worker(handle, concurrency=2)
        thread = worker.start_in_thread(timeout=hold_s + wait_s + 30)
        seen_closed = None
        deadline = time.monotonic() + hold_s + wait_s
        while time.monotonic() < deadline:
            channel = getattr(worker, "_ch", None)  # a peek at the worker's consuming channel (private)
            if seen_closed is None and channel is not None and channel.is_closed:
                seen_closed = at()
            if len(runs) >= 2 and all("finished_s" in r for r in runs):
                break
            time.sleep(POLL_S)
        worker.stop()
        thread.join(timeout=60)
        report = worker.report
        out.update(channel_seen_closed_at_s=seen_closed, worker_stopped=not thread.is_alive(),
                   report={"completed": report.completed, "retried": report.retried, "failed": report.failed,
                           "lost_lock": report.lost_lock, "redelivered": report.redelivered,
                           "reconnects": report.reconnects},
                   left_in_queue=broker.stats().waiting)
    except Exception as exc:  # noqa: BLE001 - recorded, not hidden: the adapter is what is tested
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        worker_log.removeHandler(notes)
        try:
            broker.remove()
        finally:
            broker.close()
    out.update(worker_warnings=notes.lines, runs=runs, ran=len(runs), ran_at_once=_overlap(runs))
    return out


def _node_log(instance: Any, limit: int = 20) -> list[str]:
    """The node's log lines about the timeout (its log folder, as brokers/amqp/server.py sets it)."""
    found: list[str] = []
    for path in sorted((Path(instance.folder) / "log").glob("*.log")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        found += [line[:300] for line in text.splitlines() if any(w in line for w in LOG_WORDS)]
    return found[-limit:]


def _line(t: dict[str, Any]) -> str:
    if "error" in t:
        return f"{t['consumer'][:5]:6s} FAILED: {t['error']}"
    closed = t.get("channel_closed_at_s", t.get("channel_seen_closed_at_s"))
    runs = ", ".join(f"#{r['run']} {r['started_s']}-{r.get('finished_s', '?')} s"
                     f"{' (redelivered)' if r['redelivered'] else ''}{' ack ' + r['ack'] if 'ack' in r else ''}"
                     for r in t["runs"])
    extra = f"; report {t['report']}" if "report" in t else f"; close {t.get('close_code')} {t.get('close_text')}"
    return (f"{t['consumer'][:5]:6s} channel closed at {closed} s; ran {t['ran']} time(s), at once: "
            f"{t['ran_at_once']}; runs: {runs}; left {t.get('left_in_queue')}{extra}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.consumer_timeout",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout-ms", type=int, default=3000,
                        help="the node's consumer_timeout, in ms (default %(default)s)")
    parser.add_argument("--hold", type=float, default=90.0,
                        help="seconds the first run of the job takes (default %(default)s)")
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds allowed after the first run for the redelivery (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of both trials (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("reports/experiments"),
                        help="folder for the results (default %(default)s)")
    args = parser.parse_args(argv)
    config = {"consumer_timeout": str(args.timeout_ms)}
    instance = private_instance("rabbitmq", config)
    instance.start()
    trials: list[dict[str, Any]] = []
    server: dict[str, str] = {}
    node_log: list[str] = []
    try:
        server = _server(instance.url)
        for n in range(args.repeat):
            for run in (pika_trial, ours_trial):
                t = run(instance.url, args.hold, args.wait, n)
                trials.append(t)
                print(_line(t), flush=True)
        node_log = _node_log(instance)
    finally:
        instance.cleanup()
    result = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "status": "checked: its first run (2026-12-07) met the expectations of its docstring",
              "settings": {"consumer_timeout_ms": args.timeout_ms, "hold_s": args.hold, "wait_s": args.wait,
                           "repeat": args.repeat, "node": f"private RabbitMQ node, rabbitmq.conf {config}"},
              "trials": trials, "node_log": node_log,
              "environment": environment.capture({"rabbitmq": {"kind": "rabbitmq", **server}})}
    path = results_files.write_named(result, args.out, "consumer-timeout")
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
