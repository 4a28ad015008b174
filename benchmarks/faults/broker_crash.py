"""Scenario 2, broker crash: SIGKILL the broker under load, restart it, count what was lost.

The load is closed loop (producers as fast as they can, backlog kept at a few thousand jobs),
so at the moment of the crash the broker holds a backlog that a weak profile loses. Profiles
that promise no loss run three times.

Lost = jobs the producer was told were accepted (publish returned / confirm arrived) and that
never ran. Clients reconnect by themselves; consumers re-run what they held (duplicates).

Durability profiles and what each promises:
  Redis no persistence           everything in memory is gone: loses the backlog
  Redis AOF everysec             fsync once a second: may lose up to about a second of jobs
  Redis AOF always               fsync before each reply: loses nothing acknowledged
  RabbitMQ transient messages    confirmed from memory: lost on restart
  RabbitMQ persistent, no confirms   the producer is never told: what was in flight is lost
  RabbitMQ persistent + confirms     confirmed once on disk: loses nothing confirmed
  RabbitMQ quorum + confirms         confirmed once in the Raft log: loses nothing confirmed
"""

from __future__ import annotations

import time
from typing import Any

from ..runner import run
from ..scenario import Scenario
from ..supervision import Action, RunContext
from .common import REDIS_PROFILES, Row, Session, attach

NO_LOSS = {"AOF always", "persistent + confirms", "quorum + confirms"}
RABBIT_PROFILES: dict[str, dict[str, Any]] = {
    "transient messages": {"persistent": False, "confirms": "windowed"},
    "persistent, no confirms": {"persistent": True, "confirms": "off"},
    "persistent + confirms": {"persistent": True, "confirms": "windowed"},
    "quorum + confirms": {"persistent": True, "confirms": "windowed", "queue_type": "quorum"},
}


def _crash(instance: Any, down_s: float) -> Any:
    def do(context: RunContext) -> str:
        started = time.monotonic()
        instance.kill()
        time.sleep(down_s)
        instance.start()
        return f"SIGKILL broker, restarted after {time.monotonic() - started:.1f} s"
    return do


def _recovery(result: dict[str, Any]) -> float | None:
    """Seconds from the crash until jobs complete again at half the rate before it."""
    crash = next((e["t_s"] for e in result.get("events", []) if e["what"].startswith("SIGKILL")), None)
    f = result["figures"]
    if crash is None or not f:
        return None
    timeline = list(zip(f["timeline"]["t_s"], f["timeline"]["done_per_s"], strict=False))
    before = sorted(done for t, done in timeline if 1 <= t < crash - 1)
    if not before:
        return None
    normal = before[len(before) // 2]
    for t, done in timeline:
        if t > crash + 1 and done >= normal / 2:
            return round(t - crash, 1)
    return None


def run_case(session: Session, broker: str, profile: str, attempt: int = 0, runs: int = 1) -> Row:
    """One crash of one broker with one durability profile."""
    options = RABBIT_PROFILES.get(profile, {}) if broker == "rabbitmq" else {}
    # Closed loop: producers keep a backlog of up to max_backlog jobs, so a crash has something
    # to lose; consumers finish what survives after the restart.
    base = Scenario(profile="user_variables_update", mode="closed", duration_s=session.size(10, 7), warmup_s=1,
                    producers=1, consumers=1, concurrency=4, max_backlog=3000, drain_timeout_s=60)
    if broker == "redis":
        instance: Any = session.brokers.fresh_redis(REDIS_PROFILES[profile])
        down = 0.5
    else:
        instance = session.brokers.rabbitmq()
        down = 1.0
    scenario = base.with_(broker=broker, label=f"broker-crash-{broker}",
                          broker_options={**options, "reconnect_for_s": 60.0})
    result, path = run(scenario, url=instance.url, out=session.out, progress=session.progress,
                       actions=[Action(1 + scenario.duration_s / 3, _crash(instance, down))])
    f = result["figures"] or {}
    lost, dup = f.get("lost"), f.get("duplicated")
    if profile in NO_LOSS:
        expectation = "lost 0 (the profile promises it)"
        met = lost == 0
    else:
        expectation = "may lose accepted jobs (the profile does not promise otherwise)"
        met = lost is not None
    recovery = _recovery(result)
    note = f"run {attempt + 1}/{runs}; accepted {f.get('accepted')}, redelivered {f.get('redelivered')}"
    if f.get("unconfirmed_at_end"):
        note += f", unconfirmed at end {f['unconfirmed_at_end']}"
    errors = [e for e in result["errors"] if "drain_timeout_s" not in e]
    if errors:
        note += "; errors: " + "; ".join(errors)
        met = False
    attach(result, path, expectation, met, profile=profile, recovery_s=recovery)
    return Row("broker crash", broker, profile, lost, dup, recovery, expectation, met, note,
               str(path) if path else None)


def run_scenario(session: Session) -> list[Row]:
    repeats = 1 if session.small else 3
    rows = []
    cases = [("redis", p) for p in REDIS_PROFILES] + [("rabbitmq", p) for p in RABBIT_PROFILES]
    for broker, profile in cases:
        runs = repeats if profile in NO_LOSS else 1
        rows += [run_case(session, broker, profile, attempt, runs) for attempt in range(runs)]
    return rows
