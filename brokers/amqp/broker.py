"""RabbitMQ (AMQP 0-9-1, pika): the adapter object that ties producer, worker and stats."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping, Sequence

import pika
import pika.exceptions as pe

from ..contract import (
    MAX_JOB_BYTES,
    Broker,
    BrokerError,
    Capabilities,
    CrashRedelivery,
    FailedJob,
    Feature,
    Handler,
    Hooks,
    QueueStats,
    Support,
)
from .codec import H_ATTEMPTS_MADE, H_FAILED_REASON
from .connection import connect
from .driver import KIND
from .node_counts import Ctl, NodeUnreadable, QueueCounts, find_ctl, instance_ctl, read_counts, vhost_of
from .producer import DEFAULT_WINDOW, AmqpProducer
from .topology import Topology
from .worker import AmqpWorker

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    delivery=("at-least-once with publisher confirms and manual acks: a job is accepted when the "
              "broker confirms it (persistent messages: written to disk; quorum queues: to a "
              "majority); it is removed only when a worker acks it; a dropped consumer "
              "connection returns its unacked jobs to the queue at once. Without confirms, "
              "'accepted' only means written to a socket."),
    ordering=("FIFO per queue; requeued (redelivered) messages go back near the head; retried "
              "jobs go to the tail after their delay; with prefetch > 1 and several consumers "
              "jobs start out of order. Priorities: higher AMQP priority first, and jobs without "
              "priority run after all prioritized ones (BullMQ does the opposite)."),
    durability=("durable queues and persistent messages survive a broker restart once confirmed; "
                "transient messages do not; quorum queues replicate (one node here)."),
    delay=Feature(Support.EMULATED, "28 binary delay levels (queues with x-message-ttl 2^n ms, 16 ms "
                                    "to 2^31 ms, dead-lettering level to level, then to the main exchange; "
                                    "delays rounded up to 16 ms; no plugin)"),
    priority=Feature(Support.NATIVE, "x-max-priority on classic lane queues (quorum: none)"),
    retries=Feature(Support.EMULATED, "the worker publishes a copy with attempts+1 through the "
                                      "delay queue for its backoff, then acks the original"),
    dead_letter=Feature(Support.NATIVE, "dead-letter exchange and queue; the worker adds the "
                                        "reason in headers"),
    routing=Feature(Support.NATIVE, "topic exchange, routing key = job type, one binding per "
                                    "routed type; an alternate exchange catches the rest"),
    batching=Feature(Support.NATIVE, "prefetch N deliveries; one basic.ack(multiple) for a run "
                                     "of settled jobs; publisher confirms in a window"),
    redelivery_after_crash=Feature(Support.NATIVE, "unacked messages requeued when the "
                                                   "connection closes"),
    stats=frozenset({"waiting", "delayed", "failed"}),
    crash_redelivery=CrashRedelivery("connection-close"),
    repeated_id=Feature(Support.NONE, "RabbitMQ keeps no index of message ids: a second publish with "
                                      "the same job id is a second message and both run (a handler "
                                      "that must run once checks the id itself)"),
)


class RabbitMQBroker(Broker):
    """A job queue on RabbitMQ (see :data:`CAPABILITIES` and :mod:`.topology`).

    :param url: ``amqp://user:password@host:port/vhost`` (or ``amqps://``).
    :param queue: the logical queue: names of its exchanges and queues start with it.
    :param routes: job type -> lane (one lane queue each, bound by job type).
    :param queue_type: "classic" or "quorum" lane queues.
    :param max_priority: ``x-max-priority`` of lane queues (0: no priorities).
    :param max_length: bound of each lane queue; beyond it publishes are refused (reject-publish).
    :param persistent: persistent (delivery mode 2) or transient messages.
    :param confirms: publisher confirms: "off", "each" or "windowed" (see :mod:`.producer`).
    :param confirm_window: unconfirmed messages a windowed producer may have in flight.
    :param confirm_timeout_s: how long a producer waits for confirms (a resource alarm holds
        them) before it gives the jobs back with PublishRejected.
    :param connect_timeout: seconds to wait for RabbitMQ when connecting.
    :param max_job_bytes: largest job data (JSON bytes) a producer sends; larger raises
        InvalidJob at once (default: RabbitMQ's default max_message_size, 128 MiB; set it to
        your broker's if lower; None: no check of ours).
    :param node: where :meth:`stats` gets the node's own counts (see :mod:`.node_counts`):
        None (default): stats() counts only what AMQP tells (cheap: one passive declare per
        queue); a private node of ours (an object with ``ctl``, such as
        :class:`~brokers.amqp.server.RabbitMQInstance`) or True (find the node behind the URL on
        this host): stats() counts everything from the node (one rabbitmqctl call, about 0.5 s).
        :meth:`held` and :meth:`node_stats` ask the node in every case, finding it if not given.
    :param worker_defaults: options every :meth:`worker` gets unless it is given others
        (``prefetch``, ``ack_batch``... see :class:`AmqpWorker`).
    """

    kind = KIND
    capabilities = CAPABILITIES
    worker_class = AmqpWorker    # its keyword options are constructor options too (worker defaults)

    def __init__(self, url: str, queue: str = "brokerbench", routes: Mapping[str, str] | None = None,
                 *, queue_type: str = "classic", max_priority: int = 0, max_length: int | None = None,
                 persistent: bool = True,
                 confirms: str = "windowed", confirm_window: int = DEFAULT_WINDOW, confirm_timeout_s: float = 30.0,
                 connect_timeout: float = 3.0, max_job_bytes: int | None = MAX_JOB_BYTES,
                 node: Any = None, **worker_defaults: Any) -> None:
        super().__init__(queue, routes)
        self.url = url
        self.connect_timeout = connect_timeout
        self.max_job_bytes = max_job_bytes
        self.topology = Topology(queue, self.routes, queue_type=queue_type, max_priority=max_priority,
                                 max_length=max_length)
        self.node = node
        self._ctl: Ctl | None = instance_ctl(node) if node is not None and node is not True else None
        self._ctl_searched = self._ctl is not None
        self.producer_defaults = {"confirms": confirms, "window": confirm_window,
                                  "confirm_timeout_s": confirm_timeout_s, "persistent": persistent}
        self.worker_defaults = worker_defaults
        self._admin = connect(url, role="admin", connect_timeout=connect_timeout)
        self._admin_ch = self._admin.channel()
        self.topology.declare(self._admin_ch)
        self.server = {k: (v.decode() if isinstance(v, bytes) else v)
                       for k, v in self._admin._impl.server_properties.items()  # noqa: SLF001
                       if k in ("product", "version", "platform")}

    def producer(self, **options: Any) -> AmqpProducer:
        return AmqpProducer(self, **{**self.producer_defaults, **options})

    def worker(self, handlers: Mapping[str, Handler] | Handler, *, concurrency: int = 1,
               lanes: Sequence[str] | None = None, hooks: Sequence[Hooks] = (),
               **options: Any) -> AmqpWorker:
        return AmqpWorker(self, handlers, concurrency=concurrency, lanes=lanes, hooks=hooks,
                          **{**self.worker_defaults, **options})

    # ------------------------------------------------------------------------------ admin
    def _admin_call(self, action: Callable[[Any], Any]) -> Any:
        """Run ``action(channel)`` on the admin connection, reopening it once if it dropped."""
        for attempt in (1, 2):
            try:
                if not self._admin.is_open:
                    self._admin = connect(self.url, role="admin", connect_timeout=self.connect_timeout)
                    self._admin_ch = self._admin.channel()
                elif not self._admin_ch.is_open:
                    self._admin_ch = self._admin.channel()
                return action(self._admin_ch)
            except (pe.AMQPConnectionError, pe.StreamLostError, pe.ConnectionWrongStateError):
                if attempt == 2:
                    raise

    def queue_depth(self, name: str) -> int | None:
        """Ready messages in a queue (passive declare), None if it does not exist."""
        def depth(ch: Any) -> int | None:
            try:
                return ch.queue_declare(name, passive=True).method.message_count
            except pe.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    self._admin_ch = self._admin.channel()
                    return None
                raise
        return self._admin_call(depth)

    def stats(self) -> QueueStats:
        """This queue's counts.

        Without ``node`` (the default), what AMQP tells, one passive ``queue.declare`` per queue:
        ``waiting`` = messages ready in the lanes, ``delayed`` = messages ready in the delay
        levels, ``failed`` = messages ready in the dead-letter queue; ``active`` is None and
        ``completed`` None. It CANNOT see unacknowledged messages (jobs a worker holds) nor the
        messages a quorum delay level holds for at-least-once dead-lettering (a delayed or
        retried job whose lane is full: it is in no count here until the lane takes it, up to
        ``dead_letter_worker_publisher_confirm_timeout`` later, 180 s by default). Use
        :meth:`held` (or ``node=``) where those matter.

        With ``node``, the node's own counts (:meth:`node_stats`), which see both: one
        rabbitmqctl call; BrokerError if the node cannot be read."""
        if self.node is not None:
            counted = self.node_stats()
            if counted is None:
                raise BrokerError(f"stats: the RabbitMQ node of queue {self.queue!r} could not be read "
                                  "(node= was given); stats() without node= counts what AMQP tells")
            return counted
        t = self.topology
        def total(names: list[str]) -> int:
            return sum(self.queue_depth(n) or 0 for n in names)
        return QueueStats(
            waiting=total([t.lane_queue(lane) for lane in self.lanes]),
            active=None,      # unacked: AMQP does not say (node_stats() does)
            delayed=total(t.delay_queues()),  # ready only: not those held for dead-lettering
            completed=None,   # RabbitMQ keeps nothing of an acked message
            failed=total([t.dead_queue]),
        )

    # ------------------------------------------------------------------ the node's own counts
    def _node_ctl(self) -> Ctl | None:
        """rabbitmqctl for this broker's node: the one given, else found once (None: none)."""
        if not self._ctl_searched:
            self._ctl_searched = True
            try:
                self._ctl = find_ctl(self.url)
            except Exception as exc:  # noqa: BLE001 - not finding it is an answer: None
                log.debug("no RabbitMQ node to ask for %s: %r", self.queue, exc)
        return self._ctl

    def node_counts(self) -> dict[str, QueueCounts | None] | None:
        """Every queue of this logical queue (lanes, dead-letter queue, delay levels), counted
        by the node itself: ready, unacked and held for dead-lettering (None: the queue does not
        exist). None when no node can be asked or it did not answer (see :mod:`.node_counts`).
        Uses no AMQP connection: safe beside a thread that calls :meth:`stats`."""
        ctl = self._node_ctl()
        if ctl is None:
            return None
        t = self.topology
        # Delay levels from the longest down, then the lanes, then the dead letters: the way
        # messages flow, so a message moving on between two reads is seen twice, not missed.
        names = [*reversed(t.delay_queues()), *(t.lane_queue(lane) for lane in self.lanes), t.dead_queue]
        try:
            return read_counts(ctl, vhost_of(self.url), names)
        except NodeUnreadable as exc:
            log.warning("counting queue %s on its RabbitMQ node failed: %s", self.queue, exc)
            return None

    def node_stats(self) -> QueueStats | None:
        """Everything this queue's queues hold, as the node counts it (None: no node to ask):

        waiting   ready in the lanes
        active    unacknowledged in the lanes (delivered to a worker, not settled)
        delayed   everything in the delay levels: ready (waiting out their TTL), unacked (none
                  of ours consumes them) and held for at-least-once dead-lettering (the TTL is
                  over and the lane has not taken the job yet, e.g. a full bounded lane)
        failed    everything in the dead-letter queue, and anything a lane is dead-lettering
        completed None (RabbitMQ keeps nothing of an acked message)

        One rabbitmqctl call (about 0.5 s): for decisions, not for a 50 ms loop. The queues are
        read one after another, not as one snapshot."""
        counts = self.node_counts()
        if counts is None:
            return None
        t = self.topology
        def part(names: Sequence[str], pick: Callable[[QueueCounts], int]) -> int:
            return sum(pick(c) for c in (counts.get(n) for n in names) if c is not None)
        lanes = [t.lane_queue(lane) for lane in self.lanes]
        return QueueStats(
            waiting=part(lanes, lambda c: c.ready),
            active=part(lanes, lambda c: c.unacked),
            delayed=part(t.delay_queues(), lambda c: c.total),
            completed=None,
            failed=part([t.dead_queue], lambda c: c.total) + part(lanes, lambda c: c.dead_lettering),
        )

    def held(self) -> int | None:
        """How many jobs the broker still holds for this queue that may yet run: ready and
        unacked in the lanes, and everything in the delay levels, including the messages held
        for at-least-once dead-lettering that :meth:`stats` cannot see (waiting + active +
        delayed of :meth:`node_stats`). None when no node can be asked: then nobody can tell.
        The harness asks this before it calls a run over (never in its 50 ms loop)."""
        counted = self.node_stats()
        if counted is None:
            return None
        return (counted.waiting or 0) + (counted.active or 0) + (counted.delayed or 0)

    def dead_letters(self, limit: int = 100) -> list[tuple[pika.BasicProperties, bytes]]:
        """Read (and requeue) up to ``limit`` dead-lettered messages, for tests and teaching."""
        def read(ch: Any) -> list[tuple[pika.BasicProperties, bytes]]:
            out, tags = [], []
            for _ in range(limit):
                method, props, body = ch.basic_get(self.topology.dead_queue, auto_ack=False)
                if method is None:
                    break
                out.append((props, body))
                tags.append(method.delivery_tag)
            if tags:
                ch.basic_nack(tags[-1], multiple=True, requeue=True)
            return out
        return self._admin_call(read)

    def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        out = []
        for props, body in self.dead_letters(limit):
            headers = props.headers or {}
            reason = headers.get(H_FAILED_REASON) or headers.get("x-first-death-reason") or ""
            try:
                data = json.loads(body)
            except ValueError:
                data = body.decode("utf-8", "replace")
            out.append(FailedJob(props.message_id or "", props.type or "",
                                 reason.decode() if isinstance(reason, bytes) else str(reason),
                                 int(headers.get(H_ATTEMPTS_MADE, 0) or 0), data))
        return out

    def purge(self) -> None:
        """Delete this queue's queues and exchanges, then declare them again, empty."""
        self.remove()
        self._admin_call(lambda ch: self.topology.declare(ch, again=True))

    def remove(self) -> None:
        """Delete this queue's queues and exchanges (lanes, dead letters, delay levels) for good."""
        t = self.topology
        def wipe(ch: Any) -> None:
            for name in t.all_queues():
                ch.queue_delete(name)
            for name in t.all_exchanges():
                ch.exchange_delete(name)
        self._admin_call(wipe)

    def clear(self) -> None:
        """Purge every queue of this logical queue (lanes, dead letters, delay levels); the
        exchanges, queues and bindings stay."""
        self._admin_call(lambda ch: [ch.queue_purge(name) for name in self.topology.all_queues()])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "queue": self.queue, "lanes": self.lanes, **self.server,
                "queue_type": self.topology.queue_type, "max_priority": self.topology.max_priority,
                **{f"producer_{k}": v for k, v in self.producer_defaults.items()}}

    def close(self) -> None:
        try:
            if self._admin.is_open:
                self._admin.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
