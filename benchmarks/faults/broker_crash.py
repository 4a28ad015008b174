"""Scenario 2, broker crash: SIGKILL the broker under load, restart it, count what was lost.

The load is closed loop (producers as fast as they can, backlog kept at a few thousand jobs),
so at the moment of the crash the broker holds a backlog that a weak profile loses. Profiles
that promise no loss run three times.

Lost = jobs the producer was told were accepted (publish returned / confirm arrived) and that
never ran. Clients reconnect by themselves; consumers re-run what they held (duplicates).

Each kind's durability profiles, and what each promises, come from its driver
(:attr:`brokers.registry.Driver.durability`): Redis {no persistence, AOF everysec, AOF
always}; RabbitMQ {transient messages, persistent without confirms, persistent + confirms,
quorum + confirms}.

With contenders (``--client``), each runs every profile whose adapter options it can honour
(``brokers.clients.Client.options_for_role``): the same crash, the same counts.
"""

from __future__ import annotations

import time
from typing import Any

from brokers import registry

from ..harness.durability import describe_profile
from ..harness.runner import run
from ..harness.scenario import Scenario
from ..harness.supervision import Action, RunContext
from .common import Row, Session, attach


def no_loss_profiles() -> set[str]:
    """Names of the profiles that promise to lose nothing acknowledged, over every kind."""
    return {p.name for d in registry.drivers() for p in d.durability if p.no_loss}


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


def run_case(session: Session, broker: str, profile: str, attempt: int = 0, runs: int = 1, client: str = "") -> Row:
    """One crash of one broker with one durability profile, with our adapter or a contender's
    roles (``client``)."""
    driver = registry.get(broker)
    chosen = driver.profile(profile)
    # Closed loop: producers keep a backlog of up to max_backlog jobs, so a crash has something
    # to lose; consumers finish what survives after the restart.
    base = Scenario(profile="user_variables_update", mode="closed", duration_s=session.size(10, 7), warmup_s=1,
                    producers=1, consumers=1, concurrency=4, max_backlog=3000, drain_timeout_s=60)
    if chosen.own_instance:
        instance: Any = session.brokers.fresh(broker, dict(chosen.server))
    else:
        instance = session.brokers.instance(broker, dict(chosen.server) or None)
    label = f"broker-crash-{broker}" + (f"-{client}" if client else "")
    scenario = base.with_(broker=broker, client=client, label=label, durability=chosen.level,
                          broker_options={**chosen.options, "reconnect_for_s": 60.0})
    result, path = run(scenario, url=instance.url, out=session.out, progress=session.progress,
                       actions=[Action(1 + scenario.duration_s / 3, _crash(instance, driver.restart_pause_s))],
                       extra={"durability": describe_profile(chosen, "a private instance of the scenario")})
    f = result["figures"] or {}
    lost, dup = f.get("lost"), f.get("duplicated")
    if chosen.no_loss:
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
               str(path) if path else None, level=chosen.level, client=client)


def run_scenario(session: Session) -> list[Row]:
    repeats = 1 if session.small else 3
    rows = []
    for driver, client in session.pairs(can_crash=True):
        for profile in driver.durability:
            if client and not honours(client, profile):
                continue
            runs = repeats if profile.no_loss else 1
            rows += [run_case(session, driver.kind, profile.name, attempt, runs, client) for attempt in range(runs)]
    return rows


def honours(client: str, profile: registry.DurabilityProfile) -> bool:
    """Whether a contender can run with a profile's adapter options (a profile whose promise
    needs an option of our adapter that the contender lacks is not run with it, never faked)."""
    from brokers import clients

    try:
        clients.get(client).options_for_role(profile.options)
    except ValueError:
        return False
    return True
