"""The RabbitMQ objects behind one brokerbench queue, and how messages flow between them.

::

    producer --(routing key = job type)--> <q>            topic exchange, durable
                 one binding per routed job type  --> <q>.<lane>       lane queue
                 anything unbound (alternate-exchange) --> <q>.unrouted --> <q>.default

    delayed job or retry --(header bb-delay=<ms>)--> <q>.delay     headers exchange
                 --> <q>.delay.<ms>   queue with x-message-ttl=<ms>, dead-letters to <q>,
                                      keeping the job type as routing key

    failed for good --> <q>.dlx  fanout --> <q>.dead     dead-letter queue (reason in headers)

Why one delay queue per delay value: RabbitMQ expires messages only at the head of a queue,
so a queue holding messages with different per-message TTLs releases a short-TTL message only
after the long one before it (head-of-line blocking). In a queue where every message has the
same TTL, the head is always the first to expire. Delay queues are declared on first use,
with x-expires (delay + 10 minutes) so unused ones disappear; a publisher re-declares a delay
queue before that lease can run out while it still uses it, so no message outlives its queue.

Lane queues are durable, classic by default (``x-queue-type: quorum`` on request), and carry
``x-dead-letter-exchange`` so that anything the broker itself rejects or expires from them
(a quorum queue's delivery limit, a length limit) also ends in the dead-letter queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from pika.adapters.blocking_connection import BlockingChannel

from ..contract import DEFAULT_LANE, MAX_PRIORITY

DELAY_HEADER = "bb-delay"
DELAY_QUEUE_SPARE_MS = 600_000  # a delay queue outlives its last use by this much
REDECLARE_AFTER_S = DELAY_QUEUE_SPARE_MS / 2000


@dataclass
class Topology:
    """Names and declarations of one queue's exchanges and queues."""

    queue: str
    routes: Mapping[str, str]
    queue_type: str = "classic"
    max_priority: int = 0
    max_length: int | None = None  # lane queue bound: publishes beyond it are refused (nacked)
    _delay_declared: dict[int, float] = field(default_factory=dict)  # delay -> last declare
    _delay_known: set[int] = field(default_factory=set)  # every delay queue this process used

    def __post_init__(self) -> None:
        if self.queue_type not in ("classic", "quorum"):
            raise ValueError(f"queue_type must be 'classic' or 'quorum', got {self.queue_type!r}")
        if self.queue_type == "quorum" and self.max_priority:
            raise ValueError("quorum queues in RabbitMQ 3.x have no priorities: use classic queues "
                             "with max_priority, or no priority")
        if not 0 <= self.max_priority <= 255:
            raise ValueError("max_priority must be 0..255")

    # ------------------------------------------------------------------------------ names
    @property
    def exchange(self) -> str: return self.queue
    @property
    def unrouted_exchange(self) -> str: return f"{self.queue}.unrouted"
    @property
    def delay_exchange(self) -> str: return f"{self.queue}.delay"
    @property
    def dead_exchange(self) -> str: return f"{self.queue}.dlx"
    @property
    def dead_queue(self) -> str: return f"{self.queue}.dead"

    def lane_queue(self, lane: str) -> str:
        return f"{self.queue}.{lane}"

    def delay_queue(self, delay_ms: int) -> str:
        return f"{self.queue}.delay.{delay_ms}"

    @property
    def lanes(self) -> list[str]:
        return [DEFAULT_LANE] + sorted(set(self.routes.values()) - {DEFAULT_LANE})

    def known_delay_queues(self) -> list[str]:
        return [self.delay_queue(ms) for ms in sorted(self._delay_known)]

    def amqp_priority(self, priority: int) -> int:
        """BullMQ-style priority (1 most urgent .. MAX_PRIORITY, 0 none) -> AMQP's (higher first).

        A job without priority gets AMQP priority 0, the lowest: RabbitMQ runs it after every
        prioritized job, where BullMQ runs it before them. That difference is real and kept.
        """
        if not self.max_priority or priority <= 0:
            return 0
        return min(MAX_PRIORITY + 1 - priority, self.max_priority)

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

    def declare(self, ch: BlockingChannel) -> None:
        """Declare everything except delay queues (made on first use). Idempotent."""
        ch.exchange_declare(self.unrouted_exchange, "fanout", durable=True)
        ch.exchange_declare(self.exchange, "topic", durable=True,
                            arguments={"alternate-exchange": self.unrouted_exchange})
        ch.exchange_declare(self.delay_exchange, "headers", durable=True)
        ch.exchange_declare(self.dead_exchange, "fanout", durable=True)
        ch.queue_declare(self.dead_queue, durable=True)
        ch.queue_bind(self.dead_queue, self.dead_exchange)
        for lane in self.lanes:
            ch.queue_declare(self.lane_queue(lane), durable=True, arguments=self.lane_arguments())
        ch.queue_bind(self.lane_queue(DEFAULT_LANE), self.unrouted_exchange)
        for job_type, lane in sorted(self.routes.items()):
            ch.queue_bind(self.lane_queue(lane), self.exchange, routing_key=job_type)

    def ensure_delay_queue(self, ch: BlockingChannel, delay_ms: int) -> None:
        """Declare (or renew the lease of) the delay queue for ``delay_ms``."""
        now = time.monotonic()
        last = self._delay_declared.get(delay_ms)
        if last is not None and now - last < REDECLARE_AFTER_S:
            return
        name = self.delay_queue(delay_ms)
        ch.queue_declare(name, durable=True, arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": self.exchange,
            "x-expires": delay_ms + DELAY_QUEUE_SPARE_MS,
        })
        ch.queue_bind(name, self.delay_exchange,
                      arguments={"x-match": "all", DELAY_HEADER: str(delay_ms)})
        self._delay_declared[delay_ms] = now
        self._delay_known.add(delay_ms)

    def forget_delay_queues(self) -> None:
        """After a reconnect: declare delay queues again before using them."""
        self._delay_declared.clear()

    def reset_delay_queues(self) -> None:
        """After the delay queues were deleted: this process knows of none any more."""
        self._delay_declared.clear()
        self._delay_known.clear()

    def all_queues(self) -> list[str]:
        return [self.lane_queue(lane) for lane in self.lanes] + [self.dead_queue] + \
            self.known_delay_queues()

    def all_exchanges(self) -> list[str]:
        return [self.exchange, self.unrouted_exchange, self.delay_exchange, self.dead_exchange]
