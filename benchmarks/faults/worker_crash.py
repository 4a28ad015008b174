"""Scenario 1, worker crash: SIGKILL one of three consumers mid-job under steady load.

Expectation: nothing lost on any broker (at-least-once); duplicates are allowed (jobs the dead
worker finished but had not yet acknowledged run again). Recovery time differs, as each
adapter's capabilities say (:class:`brokers.contract.CrashRedelivery`):
* RabbitMQ returns a dead consumer's unacked messages the moment its connection closes;
* BullMQ-style Redis waits for the job's lock to expire (lock duration) and for a stalled check
  to notice (every stalled interval): recovery within max(lock, 2 x stalled interval) + stalled
  interval, the bound :class:`brokers.contract.CrashRedelivery` derives. Several lock/interval
  settings show the trade-off (short locks recover fast but must be renewed often, and a long GC
  pause can make a live job look stalled).
Each kind's settings come from its driver (``recovery_settings``); small runs use the last.
With contenders (``brokerbench scenario worker-crash --client bullmq-node``) the same crash hits
the contender's worker: the harness's consumer process is killed and its role process (Node)
dies with it (PR_SET_PDEATHSIG); the official BullMQ takes the same lock and stalled-check
settings, so the same bound applies.
"""

from __future__ import annotations

from typing import Any

from ..harness.runner import run
from ..harness.scenario import Scenario
from ..harness.supervision import Action, RunContext
from .common import Row, Session, attach

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
    for driver, client in session.pairs(can_crash=True):
        rule = driver.capabilities.crash_redelivery
        settings = driver.recovery_settings[-1:] if session.small else driver.recovery_settings
        for setting in settings:
            url = session.brokers.default_instance(driver.kind).url
            bound = rule.bound_s(setting.options)
            scenario = base.with_(broker=driver.kind, client=client, broker_options=dict(setting.options),
                                  label=f"worker-crash-{driver.kind}" + (f"-{client}" if client else ""),
                                  # wait for the slowest allowed recovery
                                  drain_timeout_s=max(base.drain_timeout_s, (bound or 0) + 10))
            result, path = run(scenario, url=url, out=session.out, progress=session.progress,
                               actions=[Action(1 + duration / 3, _kill_consumer)])
            first, last = _recovery(result)
            f = result["figures"] or {}
            expectation = f"lost 0; {rule.describe(setting.options)}"
            met = f.get("lost") == 0 and last is not None and bound is not None and last <= bound + SLACK_S
            note = f"redelivered {f.get('redelivered', 0)} runs, first after {first} s, last after {last} s"
            if result["errors"]:
                note += "; errors: " + "; ".join(result["errors"])
                met = False
            attach(result, path, expectation, met, profile=setting.label, recovery_first_s=first, recovery_last_s=last)
            rows.append(Row("worker crash", driver.kind, setting.label, f.get("lost"), f.get("duplicated"), last,
                            expectation, met, note, str(path) if path else None, client=client))
    return rows
