"""The AMQP worker: manual acks, prefetch, batched multiple-acks, retries and dead letters.

Delivery guarantee: at-least-once. A message stays unacknowledged until its job is settled;
if this process dies or its connection drops, RabbitMQ puts every unacknowledged message
back in its queue (``redelivered`` set) at once, and another consumer gets it.

Settling, per outcome, always ends with an ack of the delivery:
* completed: ack.
* retried:   publish a copy with ``bb-attempts-made`` + 1, to the main exchange (no backoff) or
             through the delay queue for the backoff; wait for its confirm; then ack.
* failed:    publish a copy with the reason to the dead-letter exchange; confirm; ack.
Copies of one batch of settlements are confirmed together (:mod:`.copies`).
Because the copy is confirmed before the original is acked, a crash in between duplicates the
job, never loses it.

Acks are batched: one ``basic.ack(multiple=True)`` covers a contiguous run of settled delivery
tags, sent when the run reaches ``ack_batch`` (default prefetch / 2) or ``ack_interval_s`` has
passed; a job settled behind a slow one is acked on its own then, so it never holds a prefetch
slot for long. A crash re-runs at most the jobs whose acks were still held back.

Threads: with concurrency > 1 handlers run on a pool; they hand their settlements back to the
connection's thread, waking it through ``add_callback_threadsafe`` (pika's blocking connection
must only be used from its own thread). With concurrency 1 the handler runs on the connection's
thread, the fastest way for short jobs; but then nothing answers the broker's heartbeats while
a job runs, and a job longer than two heartbeats (60 s) loses the connection and is redelivered.
Use concurrency >= 2 for long jobs.

Why this worker has a loop of its own instead of brokers/worker_loop.py's ``PollingWorker``:
that loop asks the broker for jobs (``_exchange``: settle and fetch in one call), and the
answer is a reply to its call. RabbitMQ pushes deliveries to a consumer up to the prefetch,
whenever it likes, and only on the connection's own thread, inside pika's
``process_data_events``; acks and the copies of retried jobs must go out on that same thread.
Polling with ``basic.get`` instead would fit the pull loop but costs a round trip per message
and gives up prefetch, the very thing an AMQP consumer is measured on. So the loop here turns
pika's I/O and hands settlements back to its thread; what a run may take and when it ends are
the same :class:`~brokers.worker_loop.RunLimits` the pull loop uses, and every settlement is
counted through the same ``_tally``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pika
import pika.exceptions as pe
from pika import BasicProperties

from ..contract import BrokerUnavailable, Handler, Hooks, Outcome, Worker, WorkerReport
from ..dispatch import JobRunner, Settlement, reject, run_handler
from ..urls import redact
from ..worker_loop import RunLimits
from .codec import (
    H_ATTEMPTS_MADE,
    H_FAILED_AT,
    H_FAILED_REASON,
    job_from_message,
    republish_properties,
)
from .connection import CONNECTION_ERRORS, connect
from .copies import CopyPublisher

if TYPE_CHECKING:
    from .broker import RabbitMQBroker

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    generation: int          # which connection the delivery came on: tags die with it
    tag: int
    properties: BasicProperties
    body: bytes


class AmqpWorker(Worker):
    """Runs jobs from RabbitMQ lane queues (see the module's text for the guarantee).

    ``idle_block_s``: the longest wait for deliveries while idle (a delivery ends it at once):
    bounds how long ``stop()`` takes to be noticed.

    It drives its own loop, because pika hands deliveries to a callback on the connection's
    thread, where inline jobs are also settled; the loop's rules (:class:`RunLimits`) and the
    counting (:meth:`Worker._tally`) are the shared ones.

    :param broker: the adapter whose queue (and lanes) this worker consumes.
    :param handlers: job type -> handler, or one handler for every type.
    :param concurrency: jobs run at once, on threads when > 1 (inline on the connection's
        thread when 1: fastest for short jobs, but no heartbeats while a job runs).
    :param prefetch: unacknowledged deliveries RabbitMQ may push (``basic.qos``); default
        ``concurrency``.
    :param lanes: lanes to consume (default: all of the broker's).
    :param hooks: observers of starts and settlements.
    :param ack_batch: settled deliveries acknowledged by one ``basic.ack(multiple)``; default
        prefetch / 2.
    :param ack_interval_s: longest time a settled delivery waits for its ack.
    :param reconnect_for_s: how long a dropped connection is retried before the run gives up.
    :param copy_timeout_s: how long a retry or dead-letter copy may wait for its confirm before
        its original goes back to the queue (not counted while an alarm blocks the copies'
        connection: those wait, their originals held).
    """

    idle_block_s: float = 0.5

    def __init__(self, broker: "RabbitMQBroker", handlers: Mapping[str, Handler] | Handler, *,
                 concurrency: int = 1, prefetch: int | None = None, lanes: Sequence[str] | None = None,
                 hooks: Sequence[Hooks] = (), ack_batch: int | None = None,
                 ack_interval_s: float = 0.05, reconnect_for_s: float = 30.0,
                 copy_timeout_s: float = 30.0) -> None:
        super().__init__()
        unknown = set(lanes or ()) - set(broker.lanes)
        if unknown:
            raise ValueError(f"unknown lanes {sorted(unknown)}; this broker has {broker.lanes}")
        self.broker = broker
        self.handlers = handlers
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency
        self.lanes = list(lanes or broker.lanes)
        self.hooks = tuple(hooks)
        self.ack_batch = ack_batch or max(self.prefetch // 2, 1)
        self.ack_interval_s = ack_interval_s
        self.reconnect_for_s = reconnect_for_s
        self.copy_timeout_s = copy_timeout_s
        self.generation = 0
        self._conn: pika.BlockingConnection | None = None
        self._pub_conn: pika.BlockingConnection | None = None
        self._awaiting: dict[int, tuple[Settlement, float]] = {}  # copy ticket -> settlement, sent at
        self._parked: list[Settlement] = []   # copies not sent: an alarm blocks the copies' connection
        self._runner: JobRunner | None = None
        self._limits = RunLimits()
        self._consuming = False
        self._reset_acks()

    # ------------------------------------------------------------------------- connection
    def _reset_acks(self) -> None:
        """Forget the acknowledgement state of a channel that is gone (or not yet open). A job
        settled on it whose ack never left is counted ``lost_lock``: RabbitMQ requeued it with
        the channel, so it runs again (a settlement is counted when its ack is sent, never
        before: a channel the broker closed under a long job, as ``consumer_timeout`` does, must
        not leave that run counted as completed)."""
        self._lose_unacked()
        self._done: dict[int, tuple[Settlement, Outcome]] = {}  # settled, ack not sent
        self._run: list[tuple[Settlement, Outcome]] = []        # the pending run's settlements
        self._singled: set[int] = set()   # acked one by one, above the cursor
        self._cursor = 0                  # every tag <= cursor is acked or in the pending run
        self._run_top = 0                 # highest tag of the pending run (not yet acked)
        self._run_len = 0
        self._last_flush = time.monotonic()

    def _lose_unacked(self) -> None:
        """Count every settlement whose ack was never sent as ``lost_lock`` (its channel is gone)."""
        left = list(getattr(self, "_run", ())) + list(getattr(self, "_done", {}).values())
        self._run, self._done = [], {}
        for s, _outcome in left:
            self._count(s, Outcome.LOST_LOCK)

    def _open(self, again: bool = False) -> None:
        broker = self.broker
        self._conn = connect(broker.url, role="worker", connect_timeout=broker.connect_timeout)
        self._open_channels(again)

    def _open_channels(self, again: bool = False) -> None:
        """The consuming channel and the copies' channel, on the open connection. Delivery tags
        of an earlier consuming channel die with it (RabbitMQ requeued those deliveries)."""
        broker = self.broker
        assert self._conn is not None
        self._ch = self._conn.channel()
        self._ch_closed_by: tuple[int, str] | None = None
        self._ch._impl.add_on_close_callback(self._on_channel_close)  # noqa: SLF001
        broker.topology.declare(self._ch, again=again)
        self._open_copies()
        self._ch.basic_qos(prefetch_count=self.prefetch)
        self.generation += 1
        self._reset_acks()
        self._consumer_tags = []
        for lane in self.lanes:
            queue = broker.topology.lane_queue(lane)
            self._consumer_tags.append(self._ch.basic_consume(
                queue, lambda ch, m, p, b, lane=lane: self._on_message(lane, m, p, b)))
        self._consuming = True

    def _open_copies(self) -> None:
        """The copies' own connection (see :mod:`.copies`: an alarm then blocks copies, not acks)."""
        self._close_copies()
        broker = self.broker
        self._pub_conn = connect(broker.url, role="worker-copies", connect_timeout=broker.connect_timeout)
        self._pub = self._pub_conn.channel()
        self._copies = CopyPublisher(self._pub_conn, self._pub)  # retries and dead letters, confirmed

    def _close_copies(self) -> None:
        try:
            if self._pub_conn is not None and self._pub_conn.is_open:
                self._pub_conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
        self._pub_conn = None

    def _on_channel_close(self, _ch: Any, reason: BaseException) -> None:
        if isinstance(reason, pe.ChannelClosedByBroker):
            self._ch_closed_by = (reason.reply_code, reason.reply_text)

    def _reopen(self, error: BaseException) -> None:
        self._connection_lost(error)
        log.warning("worker lost RabbitMQ at %s (%r); reconnecting", redact(self.broker.url), error)
        self._forget_copies()  # their originals went back with the connection
        self._close_copies()
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        deadline = time.monotonic() + self.reconnect_for_s
        while True:
            try:
                self._open(again=True)
                return
            except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:  # e.g. 320 while the broker restarts
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"RabbitMQ at {redact(self.broker.url)} unreachable for "
                                            f"{self.reconnect_for_s:.0f} s: {exc!r}") from None
                time.sleep(0.5)

    def _wake(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.add_callback_threadsafe(lambda: None)
            except Exception:  # noqa: BLE001 - closed: the loop will notice by itself
                pass

    def _stop_consuming(self) -> None:
        if self._consuming:
            self._consuming = False
            for tag in self._consumer_tags:
                self._ch.basic_cancel(tag)  # undelivered prefetched messages go back (nack)

    # ------------------------------------------------------------------------------- loop
    def _on_message(self, lane: str, method: Any, props: BasicProperties, body: bytes) -> None:
        runner = self._runner
        assert runner is not None
        if not self._consuming or self._limits.room(self.report, runner.in_flight) == 0:
            self._ch.basic_nack(method.delivery_tag, requeue=True)
            self._singled.add(method.delivery_tag)
            return
        delivery = Delivery(self.generation, method.delivery_tag, props, body)
        job, bad = job_from_message(props, body, method.redelivered, lane)
        self._received(job)
        if runner.inline:
            # Run and settle now, inside the dispatch, so acks leave while later deliveries
            # still arrive: the prefetch window never runs dry between batches.
            self._settle([reject(job, bad, delivery) if bad is not None
                          else run_handler(job, self.handlers, self.hooks, delivery)])
            self._flush_acks(force=False)
        elif bad is not None:
            runner.post(reject(job, bad, delivery))
        else:
            runner.submit(job, delivery)

    def run(self, *, max_jobs: int | None = None, idle_timeout: float | None = None,
            timeout: float | None = None) -> WorkerReport:
        self._runner = runner = JobRunner(self.handlers, self.concurrency, self.hooks, wake=self._wake)
        self._limits = limits = RunLimits(max_jobs, idle_timeout, timeout)
        self._stop_seen: float | None = None
        self._open()
        assert self._conn is not None
        try:
            while True:
                now = time.monotonic()
                if self._consuming and not limits.may_take(self.stopping, self.report, runner.in_flight, now):
                    self._guard(self._stop_consuming)
                copies = len(self._awaiting) + len(self._parked)
                if copies and self.stopping and now - self._stopping_since(now) > self.copy_timeout_s:
                    self._forget_copies()  # the originals go back to the queue when we disconnect
                    copies = 0
                if not self._consuming and runner.in_flight == 0 and not copies:
                    break
                if runner.in_flight == 0 and not copies and limits.idle_expired(now):
                    break
                if copies:
                    self._guard(lambda: self._resolve_copies(0.0))
                wait = 0.0 if runner.in_flight and runner.inline else 0.05 if copies else self.idle_block_s
                left = limits.idle_left(now)
                if left is not None:
                    wait = min(wait, left)
                before = self.report.settled + runner.in_flight
                if not self._guard(lambda wait=wait: self._events(wait)):
                    continue
                settled = runner.collect()
                if settled:
                    self._guard(lambda settled=settled: self._settle(settled))
                delivered = self.report.settled + runner.in_flight != before
                if delivered or settled:
                    limits.touch()
                self._guard(lambda force=not delivered: self._flush_acks(force=force))
        finally:
            self._stop.set()
            runner.shutdown()
            leftovers = runner.collect()
            try:
                if leftovers:
                    self._settle(leftovers)
                if self._awaiting and not self._copies.blocked:
                    self._resolve_copies(min(self.copy_timeout_s, 10.0))
                self._flush_acks(force=True)
                if self._conn is not None and self._conn.is_open:
                    self._conn.close()
            except CONNECTION_ERRORS as exc:
                log.warning("worker could not ack its last jobs (%r): RabbitMQ redelivers them", exc)
            finally:
                self._lose_unacked()
                self._forget_copies()
                self._close_copies()
        return self.report

    def _events(self, wait: float) -> None:
        """Wait up to ``wait`` s for deliveries and replies. pika returns, rather than raises,
        when the broker closes a channel while the connection lives (``consumer_timeout``, a
        precondition failed): raise then, so :meth:`_guard` opens new channels at once instead
        of the worker idling on a dead channel until its next ack fails."""
        assert self._conn is not None
        self._conn.process_data_events(time_limit=wait)
        if self._ch_closed_by is not None:
            raise pe.ChannelClosedByBroker(*self._ch_closed_by)

    def _stopping_since(self, now: float) -> float:
        if self._stop_seen is None:
            self._stop_seen = now
        return self._stop_seen

    def _guard(self, action: Any) -> bool:
        """Run a step on the connection; report False after a failure it repaired. A channel
        the broker closed while the connection lives gets new channels; a dropped connection,
        a new connection."""
        try:
            action()
            return True
        except CONNECTION_ERRORS as exc:
            error: BaseException = exc
        if self.stopping and not self._runner.in_flight:  # type: ignore[union-attr]
            self._consuming = False
            return False
        if self._conn is not None and self._conn.is_open and self._ch_closed_by is not None:
            log.warning("RabbitMQ closed the worker's channel (%s %s); opening a new one (its "
                        "unacknowledged jobs are redelivered)", *self._ch_closed_by)
            try:
                self._close_channels()
                self._open_channels(again=True)
                return False
            except CONNECTION_ERRORS as exc:
                error = exc
        self._reopen(error)
        return False

    def _close_channels(self) -> None:
        try:
            if self._ch.is_open:
                self._ch.close()
        except Exception:  # noqa: BLE001 - closing what is already half gone
            pass
        self._forget_copies()
        self._close_copies()

    # ----------------------------------------------------------------------------- settling
    def _settle(self, settlements: list[Settlement]) -> None:
        """Record outcomes: an ack for a completed job; for a retry or a dead letter, first its
        copy, and the ack once the copy is confirmed (see :meth:`_resolve_copies`)."""
        for s in settlements:
            d: Delivery = s.ref
            if d.generation != self.generation:
                self._count(s, Outcome.LOST_LOCK)  # its connection is gone: RabbitMQ requeued it
            elif not self._needs_copy(s):
                self._done[d.tag] = (s, s.outcome)  # counted once its ack is sent
            else:
                self._parked.append(s)
        if self._parked:
            self._resolve_copies(5.0)

    def _needs_copy(self, s: Settlement) -> bool:
        return s.outcome is Outcome.RETRIED or (s.outcome is Outcome.FAILED and not s.job.options.remove_on_fail)

    def _resolve_copies(self, wait_s: float) -> None:
        """Send parked copies (unless an alarm blocks the copies' connection), take the confirms
        that came, and act on them: ack the original of a confirmed copy; hand back (nack,
        requeue) the original of a refused one, or of one unconfirmed for ``copy_timeout_s``."""
        if self._pub_conn is None or not self._copies.usable:
            self._forget_copies(requeue=True)
            self._open_copies()
            self.broker.topology.declare(self._pub, again=True)
        if self._parked and not self._copies.blocked:
            parked, self._parked = self._parked, []
            for s in parked:
                self._awaiting[self._republish(s, s.ref)] = (s, time.monotonic())
        refused = False
        for ticket, accepted in self._copies.results(wait_s).items():
            s, _ = self._awaiting.pop(ticket)
            if accepted:
                self._done[s.ref.tag] = (s, s.outcome)  # the copy is safe: now the original may be acked
            else:
                refused = True
                self._hand_back(s, "refused the %s copy" % s.outcome.value)
        if not self._copies.blocked:
            now = time.monotonic()
            for ticket, (s, sent) in list(self._awaiting.items()):
                if now - sent > self.copy_timeout_s:  # no confirm, and no alarm to explain it
                    del self._awaiting[ticket]
                    self._hand_back(s, f"sent no confirm in {self.copy_timeout_s:.0f} s for the "
                                       f"{s.outcome.value} copy")
        if refused:  # something was deleted under us, or the channel is gone: declare, reopen
            if not self._copies.usable:
                self._open_copies()
            self.broker.topology.declare(self._pub, again=True)

    def _hand_back(self, s: Settlement, what: str) -> None:
        """Keep a job whose copy did not make it: its original goes back to the queue."""
        d: Delivery = s.ref
        why = f" ({self._copies.closed_by[0]} {self._copies.closed_by[1]})" if self._copies.closed_by else ""
        log.error("RabbitMQ %s of job %s%s; requeueing the original", what, s.job.id, why)
        if d.generation == self.generation:
            self._ch.basic_nack(d.tag, requeue=True)
            self._singled.add(d.tag)

    def _forget_copies(self, requeue: bool = False) -> None:
        """Copies whose fate is unknown (their connection is going): their originals go back,
        now (``requeue``) or with the consuming connection."""
        pending = [s for s, _ in self._awaiting.values()] + self._parked
        self._awaiting, self._parked = {}, []
        for s in pending:
            if requeue:
                self._hand_back(s, "lost the connection before it confirmed the copy")
            else:
                self._count(s, Outcome.LOST_LOCK)

    def _count(self, s: Settlement, outcome: Outcome) -> None:
        self._tally(s.job, outcome, s.reason)

    def _republish(self, s: Settlement, d: Delivery) -> int | None:
        """Send the retry copy or the dead letter a settlement needs; its ticket, or None."""
        topology = self.broker.topology
        if s.outcome is Outcome.RETRIED:
            props = republish_properties(d.properties, {
                H_ATTEMPTS_MADE: s.job.attempts_made + 1, H_FAILED_REASON: s.reason or ""})
            if s.delay_ms > 0:
                exchange, bits = topology.delayed_route(s.delay_ms)
                props.headers.update(bits)
                return self._copies.publish(exchange, s.job.name, d.body, props)
            return self._copies.publish(topology.exchange, s.job.name, d.body, props)
        if s.outcome is Outcome.FAILED and not s.job.options.remove_on_fail:
            props = republish_properties(d.properties, {
                H_ATTEMPTS_MADE: s.job.attempts_made + 1, H_FAILED_REASON: s.reason or "",
                H_FAILED_AT: int(time.time() * 1000)})
            return self._copies.publish(topology.dead_exchange, s.job.name or "unknown", d.body, props)
        return None

    def _flush_acks(self, force: bool) -> None:
        while True:  # extend the contiguous run of settled tags
            nxt = self._cursor + 1
            if nxt in self._done:
                self._run.append(self._done.pop(nxt))
                self._run_top, self._run_len = nxt, self._run_len + 1
            elif nxt in self._singled:
                self._singled.discard(nxt)
            else:
                break
            self._cursor = nxt
        force = force or time.monotonic() - self._last_flush >= self.ack_interval_s
        if self._run_len and (force or self._run_len >= self.ack_batch):
            self._ch.basic_ack(self._run_top, multiple=True)
            acked, self._run, self._run_len = self._run, [], 0
            for s, outcome in acked:
                self._count(s, outcome)
            self._last_flush = time.monotonic()
        if force and self._done:
            for tag in sorted(self._done):  # settled behind a gap: ack each on its own
                self._ch.basic_ack(tag)
                self._singled.add(tag)
                self._count(*self._done.pop(tag))
            self._last_flush = time.monotonic()

    def close(self) -> None:
        self.stop()
