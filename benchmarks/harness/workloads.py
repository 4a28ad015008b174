"""The three job types of the workflow service, their payloads, service times and arrivals.

From the seed: a Telegram bot hands heavy work to a queue. The three job types:

heavy_workflow_execution  ~2 KB: project, execution, trigger, context with the incoming message
                          and the user's variables. Takes 1-3 s in production; runs scale that
                          by ``time_scale`` (default 0.01: 10-30 ms). 10 % of it is computation,
                          the rest waiting on I/O (simulated with sleep).
user_variables_update     ~200 B, about 1 ms (mostly a database write), the most frequent.
statistics_aggregation    ~8 KB of events to aggregate, about 5 ms, 40 % computation; arrives in
                          periodic bursts (every ``burst_every_s``) rather than evenly.

Payloads come from a seeded random generator, so two runs (and two brokers) get the same jobs.
Each payload carries its own service time (``work_ms``), so consumers need no generator.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Iterator

HEAVY = "heavy_workflow_execution"
USER_VARS = "user_variables_update"
STATS = "statistics_aggregation"
JOB_TYPES = (HEAVY, USER_VARS, STATS)

PROFILES: dict[str, dict[str, float]] = {
    "mix": {USER_VARS: 0.7, HEAVY: 0.2, STATS: 0.1},
    HEAVY: {HEAVY: 1.0},
    USER_VARS: {USER_VARS: 1.0},
    STATS: {STATS: 1.0},
}
BURSTY = {STATS}


@dataclass(frozen=True)
class ServiceModel:
    """How long a job of each type takes, and how much of that is computation."""

    time_scale: float = 0.01      # applies to heavy_workflow_execution's production 1-3 s
    factor: float = 1.0           # applies to every type; 0 makes every handler a no-op

    def work_ms(self, job_type: str, rng: random.Random) -> float:
        if job_type == HEAVY:
            base = rng.uniform(1000.0, 3000.0) * self.time_scale
        elif job_type == USER_VARS:
            base = rng.uniform(0.6, 1.4)
        else:
            base = rng.uniform(4.0, 6.0)
        return round(base * self.factor, 3)


CPU_SHARE = {HEAVY: 0.1, USER_VARS: 0.1, STATS: 0.4}


def _words(rng: random.Random, n: int) -> str:
    vocab = ("заказ", "доставка", "оплата", "привет", "статус", "бот", "меню", "корзина", "order",
             "help", "start", "promo", "city", "time", "price")
    return " ".join(rng.choice(vocab) for _ in range(n))


def make_payload(job_type: str, rng: random.Random) -> dict[str, Any]:
    """A realistic payload of ``job_type`` (without service time or harness fields)."""
    project = f"proj_{rng.randrange(16**8):08x}"
    if job_type == HEAVY:
        variables = {f"var_{i}": _words(rng, 3) for i in range(14)}
        return {
            "projectId": project, "executionId": f"exec_{rng.randrange(16**10):010x}", "trigger": "message",
            "context": {
                "message": {"chat_id": rng.randrange(10**9), "message_id": rng.randrange(10**6),
                            "from": {"id": rng.randrange(10**9), "first_name": "Алексей", "language_code": "ru"},
                            "text": _words(rng, 25)},
                "variables": variables,
                "history": [{"node": f"n{i}", "status": "ok", "ms": rng.randrange(1, 90)} for i in range(14)],
            },
        }
    if job_type == USER_VARS:
        return {"userId": rng.randrange(10**6), "projectId": project, "chatId": rng.randrange(10**5),
                "source": "telegram", "updatedBy": "workflow",
                "variables": {"lang": "ru", "step": rng.choice(["menu", "cart", "checkout", "paid"]),
                              "cart_items": rng.randrange(10), "last_seen": 1732700000 + rng.randrange(10**6)}}
    events = [{"type": rng.choice(["message", "click", "order", "error"]), "ts": 1732700000 + i * 7,
               "value": rng.randrange(1000), "node": f"n{rng.randrange(40)}"} for i in range(138)]
    return {"projectId": project, "period": "5m", "bucket": 1732700000, "events": events}


class PayloadBank:
    """A few hundred pre-generated payloads per type, so making a job costs a dict copy."""

    def __init__(self, seed: int, model: ServiceModel, per_type: int = 256) -> None:
        rng = random.Random(seed)
        self.model = model
        self.payloads = {t: [dict(make_payload(t, rng), work_ms=model.work_ms(t, rng)) for _ in range(per_type)]
                         for t in JOB_TYPES}

    def payload(self, job_type: str, n: int) -> dict[str, Any]:
        bank = self.payloads[job_type]
        return bank[n % len(bank)]


def perform(job_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """What a consumer does with a job: real computation for part of ``work_ms``, sleep for the rest."""
    work_ms = float(data.get("work_ms", 0.0))
    if work_ms <= 0:
        return {"ok": True}
    deadline = time.perf_counter() + work_ms * CPU_SHARE.get(job_type, 0.1) / 1000
    result: Any = None
    if job_type == STATS:
        while True:  # aggregate the events, again until the computation budget is spent
            totals: dict[str, int] = {}
            for event in data.get("events", ()):
                totals[event["type"]] = totals.get(event["type"], 0) + event["value"]
            result = totals
            if time.perf_counter() >= deadline:
                break
    else:
        blob = json.dumps(data.get("context") or data.get("variables") or data, sort_keys=True).encode()
        digest = b""
        while True:
            digest = hashlib.sha256(blob + digest).digest()
            if time.perf_counter() >= deadline:
                break
        result = digest.hex()[:16]
    time.sleep(work_ms * (1 - CPU_SHARE.get(job_type, 0.1)) / 1000)
    return {"ok": True, "result": result}


def closed_loop_types(profile: str, seed: int, cycle: int = 4096) -> Iterator[str]:
    """Job types by the profile's weights, forever (closed loop: no timing); a seeded cycle."""
    weights = PROFILES[profile]
    rng = random.Random(seed)
    picks = rng.choices(list(weights), list(weights.values()), k=cycle)
    while True:
        yield from picks


def open_loop_schedule(profile: str, rate: float, duration_s: float, seed: int,
                       burst_every_s: float = 2.0) -> list[tuple[float, str]]:
    """(offset in s, job type) for every job of an open-loop run, sorted by offset.

    Evenly spaced types share ``rate`` by weight; bursty types (statistics_aggregation) get
    their share as bursts of simultaneous jobs every ``burst_every_s`` seconds.
    """
    weights = PROFILES[profile]
    rng = random.Random(seed)
    steady = {t: w for t, w in weights.items() if t not in BURSTY}
    steady_rate = rate * sum(steady.values())
    out: list[tuple[float, str]] = []
    if steady_rate > 0:
        types, cum = list(steady), list(steady.values())
        n = int(duration_s * steady_rate)
        out += [(i / steady_rate, rng.choices(types, cum)[0]) for i in range(n)]
    for job_type in set(weights) & BURSTY:
        size = max(int(round(rate * weights[job_type] * burst_every_s)), 1)
        t = burst_every_s / 2
        while t < duration_s:
            out += [(t, job_type)] * size
            t += burst_every_s
    out.sort(key=lambda item: item[0])
    return out
