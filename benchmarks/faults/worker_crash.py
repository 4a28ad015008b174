"""Scenario 1, worker crash: SIGKILL one of three consumers mid-job under steady load.

Expectation: nothing lost on either broker (at-least-once); duplicates are allowed (jobs the
dead worker finished but had not yet acknowledged run again). Recovery time differs:
* RabbitMQ returns a dead consumer's unacked messages the moment its connection closes;
* BullMQ-style Redis waits for the job's lock to expire (lock duration) and for a stalled check
  to notice (every stalled interval): recovery between lock duration and lock duration + two
  stalled intervals. Three lock/interval settings show the trade-off (short locks recover fast
  but must be renewed often, and a long GC pause can make a live job look stalled).
"""

from __future__ import annotations

from typing import Any

from ..runner import run
from ..scenario import Scenario
from ..supervision import Action, RunContext
from .common import Row, Session, attach

REDIS_SETTINGS = [(5000, 5000), (2000, 1000), (1000, 500)]  # lock duration, stalled interval (ms)
SLACK_S = 1.5


def _kill_consumer(context: RunContext) -> str:
    pid = context.kill_role("consumer", 0)
    return f"SIGKILL consumer 0 (pid {pid})"


def _recovery(result: dict[str, Any]) -> tuple[float | None, float | None]:
    kills = [e["t_s"] for e in result.get("events", []) if e["what"].startswith("SIGKILL")]
    again = [t for t in result.get("redelivered_at_s", []) if kills and t >= kills[0]]
    if not kills or not again:
        return None, None
    return round(again[0] - kills[0], 3), round(again[-1] - kills[0], 3)


def run_scenario(session: Session) -> list[Row]:
    rows = []
    duration = session.size(10, 5)
    # Heavy jobs of 100-300 ms at 100/s keep about 20 jobs running across the three consumers,
    # so the one that is killed is almost surely in the middle of some (about 7 on average).
    base = Scenario(profile="heavy_workflow_execution", mode="open", rate=100, time_scale=0.1,
                    duration_s=duration, warmup_s=1, producers=1, consumers=3, concurrency=8, drain_timeout_s=40)
    settings = REDIS_SETTINGS if not session.small else REDIS_SETTINGS[-1:]
    cases: list[tuple[str, str, dict[str, Any], str]] = []
    for lock, stalled in settings:
        cases.append(("redis", f"lock {lock} ms, stalled check {stalled} ms",
                      {"lock_duration_ms": lock, "stalled_interval_ms": stalled}, ""))
    cases.append(("rabbitmq", "prefetch 8, manual acks", {}, ""))
    for broker, profile, options, _ in cases:
        url = session.brokers.plain(broker).url
        scenario = base.with_(broker=broker, broker_options=options, label=f"worker-crash-{broker}")
        result, path = run(scenario, url=url, out=session.out, progress=session.progress,
                           actions=[Action(1 + duration / 3, _kill_consumer)])
        first, last = _recovery(result)
        f = result["figures"] or {}
        if broker == "redis":
            bound = (options["lock_duration_ms"] + 2 * options["stalled_interval_ms"]) / 1000 + SLACK_S
            expectation = f"lost 0; jobs back within lock + 2 x stalled interval ({bound:.1f} s)"
            met = f.get("lost") == 0 and last is not None and last <= bound
        else:
            expectation = "lost 0; jobs back as soon as the connection closes (< 1 s)"
            met = f.get("lost") == 0 and last is not None and last <= 1.0 + SLACK_S
        note = f"redelivered {f.get('redelivered', 0)} runs, first after {first} s, last after {last} s"
        if result["errors"]:
            note += "; errors: " + "; ".join(result["errors"])
            met = False
        attach(result, path, expectation, met, recovery_first_s=first, recovery_last_s=last)
        rows.append(Row("worker crash", broker, profile, f.get("lost"), f.get("duplicated"), last, expectation,
                        met, note, str(path) if path else None))
    return rows
