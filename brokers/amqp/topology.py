"""The RabbitMQ objects behind one brokerbench queue, and how messages flow between them.

::

    producer --(routing key = job type)--> <q>            topic exchange, durable
                 one binding per routed job type  --> <q>.<lane>       lane queue
                 anything unbound (alternate-exchange) --> <q>.unrouted --> <q>.default

    delayed job or retry, delay D ms --> <q>.delay-<h>    h = the highest set bit of D rounded
                                                          up to 16 ms
        level n (exchange and queue <q>.delay-<n>, n = 4..31):
          header bb-delay-bit-<n> = "1" --> queue <q>.delay-<n>, x-message-ttl 2^n ms,
                                              dead-lettering to level n-1 (level 4: to <q>)
          header bb-delay-bit-<n> = "0" --> exchange of level n-1 (level 4: <q>) at once

    failed for good --> <q>.dlx  fanout --> <q>.dead     dead-letter queue (reason in headers)

Delays: a fixed set of 28 binary delay levels, 16 ms to 2^31 ms. A delay is rounded up to a
multiple of 16 ms (never early); a message then carries one header per bit of it, passes
through the level of each set bit once, waiting 2^n ms there, and is dead-lettered to the main
exchange with its routing key (the job type) unchanged, so it reaches its lane as if just
published. The number of queues, exchanges and bindings does not grow with the number of
distinct delays (28 queues, 28 exchanges, 56 bindings for any delay up to 2^32 - 16 ms, just
under RabbitMQ's own largest TTL). This is the design of NServiceBus's RabbitMQ transport
("delayed delivery": binary delay levels in seconds, the bits in the routing key; Kombu 5.5
adopted it for Celery), here in steps of 16 ms with the bits in headers, so the routing key stays
the job type.

Why 16 ms steps rather than 1: each level a message passes is one dead-lettering step for the
broker (about 0.1 ms of its CPU per message, measured here), so the number of set bits is the
price of a delay. Dropping the four levels below 16 ms removes about two passes from a typical
delay and costs at most 15 ms of lateness (a 500 ms backoff waits 512 ms: one pass instead of
six). The delays scenario measures both.

Why every level queue has ONE TTL: RabbitMQ expires messages only at the head of a queue, so a
queue holding messages with different per-message TTLs releases a short-TTL message only after
the long one before it (head-of-line blocking). In a queue where every message has the same TTL,
the head is always the first to expire: the pitfall cannot happen by construction.

Lane queues are durable, classic by default (``x-queue-type: quorum`` on request), and carry
``x-dead-letter-exchange`` so that anything the broker itself rejects or expires from them
(a quorum queue's delivery limit, a length limit) also ends in the dead-letter queue.

With ``queue_type="quorum"`` (the replicated profile on a cluster) EVERY queue is a quorum
queue: lanes, delay levels (with at-least-once dead-lettering) and the dead-letter queue. A
classic queue lives on one node: on a 3-node cluster, losing that node would make delayed,
retried or dead jobs unreachable (and a reconnecting client could not even declare it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pika.exceptions as pe
from pika.adapters.blocking_connection import BlockingChannel

from ..contract import DEFAULT_LANE, MAX_DELAY_MS, MAX_NAME_BYTES, MAX_PRIORITY, BrokerError, BrokerUnavailable
from .codec import H_DELAY_BITS as DELAY_BIT_HEADER  # + level: "1" or "0"

FIRST_LEVEL, LAST_LEVEL = 4, 31            # 16 ms .. 2^31 ms
DELAY_STEP_MS = 2**FIRST_LEVEL             # delays are rounded up to a multiple of this
LEVELS = range(FIRST_LEVEL, LAST_LEVEL + 1)
assert 2 ** (LAST_LEVEL + 1) - DELAY_STEP_MS == MAX_DELAY_MS
WILDCARDS = "*#"  # special in topic binding keys
RESERVED_LANES = frozenset({"dead", "dlx", "unrouted"})  # and delay-NN: see Topology._refuse_reserved_lanes


class TopologyConflict(BrokerError):
    """RabbitMQ refused a declaration: an object of that name exists with other settings."""


def delay_bits(delay_ms: int) -> tuple[int, dict[str, str]]:
    """The first level a message delayed by ``delay_ms`` (> 0) goes to, and its bit headers
    (the delay rounded up to a multiple of DELAY_STEP_MS)."""
    if not 0 < delay_ms <= MAX_DELAY_MS:
        raise ValueError(f"a delay must be 1..{MAX_DELAY_MS} ms, got {delay_ms}")
    steps = -(-delay_ms // DELAY_STEP_MS)  # ceiling: never early
    rounded = steps * DELAY_STEP_MS
    top = rounded.bit_length() - 1
    return top, {f"{DELAY_BIT_HEADER}{n}": "1" if rounded >> n & 1 else "0" for n in range(FIRST_LEVEL, top + 1)}


@dataclass
class Topology:
    """Names and declarations of one queue's exchanges and queues."""

    queue: str
    routes: Mapping[str, str]
    queue_type: str = "classic"
    max_priority: int = 0
    max_length: int | None = None  # lane queue bound: publishes beyond it are refused (nacked)
    _declared: bool = False

    def __post_init__(self) -> None:
        if self.queue_type not in ("classic", "quorum"):
            raise ValueError(f"queue_type must be 'classic' or 'quorum', got {self.queue_type!r}")
        if self.queue_type == "quorum" and self.max_priority:
            raise ValueError("quorum queues in RabbitMQ 3.x have no priorities: use classic queues "
                             "with max_priority, or no priority")
        if not 0 <= self.max_priority <= 255:
            raise ValueError("max_priority must be 0..255")
        self._refuse_reserved_lanes()
        for job_type in self.routes:
            if any(c in job_type for c in WILDCARDS):
                raise ValueError(f"a routed job type cannot contain {' or '.join(WILDCARDS)} (wildcards of a "
                                 f"RabbitMQ topic binding): {job_type!r}")
            if len(job_type.encode()) > MAX_NAME_BYTES:
                raise ValueError(f"a routed job type is at most {MAX_NAME_BYTES} bytes: {job_type[:40]!r}...")
        too_long = [n for n in self.all_queues() + self.all_exchanges() if len(n.encode()) > MAX_NAME_BYTES]
        if too_long:
            raise ValueError(f"RabbitMQ names are at most {MAX_NAME_BYTES} bytes; this queue and its lanes "
                             f"make {too_long[0][:60]!r}... ({len(too_long[0].encode())} bytes): use shorter names")

    def _refuse_reserved_lanes(self) -> None:
        """A lane whose queue would carry the name of one of our own objects (``dead``, ``dlx``,
        ``unrouted``, ``delay-04`` .. ``delay-31``) is refused here, naming the clash: declared,
        it would meet that object with other settings (RabbitMQ's 406, which reads like a stale
        queue to purge) or be confused with it."""
        own = {self.dead_queue: "dead-letter queue", self.dead_exchange: "dead-letter exchange",
               self.unrouted_exchange: "exchange for unrouted jobs",
               **{name: "delay level" for name in self.delay_queues()}}
        for lane in self.lanes:
            clash = own.get(self.lane_queue(lane))
            if clash is not None:
                raise ValueError(f"lane {lane!r} would be the queue {self.lane_queue(lane)!r}, the name of this "
                                 f"adapter's own {clash}: lane names {', '.join(sorted(RESERVED_LANES))} "
                                 f"and delay-{FIRST_LEVEL:02d} .. delay-{LAST_LEVEL} are reserved; name the lane "
                                 "otherwise")

    # ------------------------------------------------------------------------------ names
    @property
    def exchange(self) -> str: return self.queue
    @property
    def unrouted_exchange(self) -> str: return f"{self.queue}.unrouted"
    @property
    def dead_exchange(self) -> str: return f"{self.queue}.dlx"
    @property
    def dead_queue(self) -> str: return f"{self.queue}.dead"

    def lane_queue(self, lane: str) -> str:
        return f"{self.queue}.{lane}"

    def delay_level(self, level: int) -> str:
        """The name of delay level ``level``'s exchange and of its queue."""
        return f"{self.queue}.delay-{level:02d}"

    @property
    def lanes(self) -> list[str]:
        return [DEFAULT_LANE] + sorted(set(self.routes.values()) - {DEFAULT_LANE})

    def delay_queues(self) -> list[str]:
        return [self.delay_level(n) for n in LEVELS]

    def amqp_priority(self, priority: int) -> int:
        """BullMQ-style priority (1 most urgent .. MAX_PRIORITY, 0 none) -> AMQP's (higher first).

        A job without priority gets AMQP priority 0, the lowest: RabbitMQ runs it after every
        prioritized job, where BullMQ runs it before them. That difference is real and kept.
        """
        if not self.max_priority or priority <= 0:
            return 0
        return min(MAX_PRIORITY + 1 - priority, self.max_priority)

    def delayed_route(self, delay_ms: int) -> tuple[str, dict[str, str]]:
        """Where a message delayed by ``delay_ms`` is published, and the headers it needs."""
        top, bits = delay_bits(delay_ms)
        return self.delay_level(top), bits

    # ------------------------------------------------------------------------ declarations
    def lane_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-queue-type": self.queue_type,
                                "x-dead-letter-exchange": self.dead_exchange}
        if self.max_priority:
            args["x-max-priority"] = self.max_priority
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
            args["x-overflow"] = "reject-publish"  # a full queue says no (a nack); it never drops
        return args

    def declare(self, ch: BlockingChannel, *, again: bool = False) -> None:
        """Declare everything, delay levels included (about 120 declarations). Idempotent; done
        once per Topology object unless ``again`` (after a reconnect, or when something was
        found deleted). A name that exists with other settings (a queue declared by another
        version or by hand) raises TopologyConflict."""
        if self._declared and not again:
            return
        try:
            self._declare(ch)
            self._declared = True
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404 and "down or inaccessible" in str(exc.reply_text):
                raise BrokerUnavailable(f"RabbitMQ cannot reach a queue of {self.queue!r} now: {exc.reply_text} "
                                        "(a classic queue whose node is down)") from None
            raise TopologyConflict(f"RabbitMQ refused to declare the objects of queue {self.queue!r}: "
                                   f"{exc.reply_code} {exc.reply_text} (purge that queue, or use "
                                   "another queue name)") from None

    def _declare(self, ch: BlockingChannel) -> None:
        ch.exchange_declare(self.unrouted_exchange, "fanout", durable=True)
        ch.exchange_declare(self.exchange, "topic", durable=True,
                            arguments={"alternate-exchange": self.unrouted_exchange})
        ch.exchange_declare(self.dead_exchange, "fanout", durable=True)
        ch.queue_declare(self.dead_queue, durable=True,
                         arguments={"x-queue-type": "quorum"} if self.queue_type == "quorum" else None)
        ch.queue_bind(self.dead_queue, self.dead_exchange)
        for lane in self.lanes:
            ch.queue_declare(self.lane_queue(lane), durable=True, arguments=self.lane_arguments())
        ch.queue_bind(self.lane_queue(DEFAULT_LANE), self.unrouted_exchange)
        for job_type, lane in sorted(self.routes.items()):
            ch.queue_bind(self.lane_queue(lane), self.exchange, routing_key=job_type)
        self.declare_delay_levels(ch)

    def delay_arguments(self, level: int) -> dict[str, Any]:
        """A delay level queue: one TTL, dead-lettering to the level below (or the main exchange).

        Dead-lettering is at-most-once by default: a message that cannot enter its target is
        dropped, unconfirmed. With bounded lanes (``max_length``, reject-publish) a full lane
        would so drop delayed and retried jobs without a word; the levels are then quorum queues
        with at-least-once dead-lettering (RabbitMQ 3.10+), which keep a message until its target
        took it, and retry meanwhile. So they are too when the lanes are quorum queues (a node
        lost mid-hop must not drop a delayed job)."""
        below = self.delay_level(level - 1) if level > FIRST_LEVEL else self.exchange
        args: dict[str, Any] = {"x-message-ttl": 2**level, "x-dead-letter-exchange": below}
        if self.max_length is not None or self.queue_type == "quorum":
            args.update({"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
                         "x-overflow": "reject-publish"})
        return args

    def declare_delay_levels(self, ch: BlockingChannel) -> None:
        """The delay levels, lowest first (each level's dead-letter target exists before it)."""
        for level in LEVELS:
            name = self.delay_level(level)
            below = self.delay_level(level - 1) if level > FIRST_LEVEL else self.exchange
            bit = f"{DELAY_BIT_HEADER}{level}"
            ch.exchange_declare(name, "headers", durable=True)
            ch.queue_declare(name, durable=True, arguments=self.delay_arguments(level))
            ch.queue_bind(name, name, arguments={"x-match": "all", bit: "1"})
            ch.exchange_bind(destination=below, source=name, arguments={"x-match": "all", bit: "0"})

    def all_queues(self) -> list[str]:
        return [self.lane_queue(lane) for lane in self.lanes] + [self.dead_queue] + self.delay_queues()

    def all_exchanges(self) -> list[str]:
        return [self.exchange, self.unrouted_exchange, self.dead_exchange] + self.delay_queues()

    def declared_counts(self) -> dict[str, int]:
        """How many exchanges, queues and bindings :meth:`declare` makes."""
        return {"exchanges": len(self.all_exchanges()), "queues": len(self.all_queues()),
                "bindings": 1 + 1 + len(self.routes) + 2 * len(LEVELS)}
