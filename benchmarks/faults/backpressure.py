"""Scenario 7, backpressure: producers faster than consumers.

Part A, growth: 8 KB jobs published as fast as possible while consumers keep up with only a
part of them. Redis accepts everything: its memory grows with the backlog until a maxmemory
limit. RabbitMQ (here with a memory high watermark 70 MB above its idle size) raises a memory
alarm and blocks publishing connections: publishes wait (latency jumps), memory stays bounded.

Part B, Redis full: maxmemory reached under load, with the policy BullMQ asks for
(``noeviction``: writes are refused, the producer is told, workers go on) and with
``volatile-lru`` (Redis frees memory by evicting keys that have a TTL: the job locks; a job whose
lock is evicted looks stalled while it still runs, and runs again).

Part C, a long alarm (brokers that have one): a memory alarm held past the producer's confirm
timeout in the middle of an open-loop run; the jobs it could not get confirmed are given back,
and acceptances are counted again once the alarm clears.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from brokers import registry

from ..harness.resources import broker_pid
from ..harness.runner import run
from ..harness.scenario import Scenario
from ..harness.supervision import Action
from ..results.percentiles import of_summary
from .common import Row, Session, attach

HEADROOM_MB = 70


class MemoryProbe(threading.Thread):
    """The broker process's resident memory (and the broker's own figure, where it has one)
    every 0.5 s."""

    def __init__(self, kind: str, url: str) -> None:
        super().__init__(daemon=True)
        self.driver, self.url = registry.get(kind), url
        self.pid = broker_pid(kind, url)
        self.samples: list[tuple[float, float, float | None]] = []  # t, rss MB, broker's own MB
        self.halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.halt.is_set():
            try:
                rss = psutil.Process(self.pid).memory_info().rss / 1e6 if self.pid else float("nan")
                own = self.driver.memory_used_mb(self.url)
                self.samples.append((round(time.monotonic() - t0, 2), round(rss, 1),
                                     round(own, 1) if own is not None else None))
            except Exception:  # noqa: BLE001 - a sample missed is a sample missed
                pass
            self.halt.wait(0.5)

    def peak_growth(self) -> float | None:
        """Growth of the broker's own memory figure, or of its resident memory if it has none."""
        if not self.samples:
            return None
        index = 2 if any(s[2] is not None for s in self.samples) else 1
        values = [s[index] for s in self.samples if s[index] is not None]
        return round(max(values) - values[0], 1) if values else None


def _growth(session: Session) -> list[Row]:
    rows = []
    base = Scenario(profile="statistics_aggregation", mode="closed", duration_s=session.size(8, 5), warmup_s=0.5,
                    producers=2, consumers=2, concurrency=8, max_backlog=10**9, drain_timeout_s=60,
                    broker_options={"reconnect_for_s": 60.0})
    for driver in session.drivers(can_crash=True):
        kind, alarm = driver.kind, driver.memory_alarm
        if alarm is None:
            url, idle = session.brokers.default_instance(kind).url, None
        else:
            node = session.brokers.fresh(kind, dict(alarm.server))
            idle = alarm.arm(node, HEADROOM_MB)
            url = node.url
        probe = MemoryProbe(kind, url)
        probe.start()
        result, path = run(base.with_(broker=kind, label=f"backpressure-growth-{kind}"), url=url, out=session.out,
                           progress=session.progress)
        probe.halt.set()
        probe.join(5)
        f = result["figures"] or {}
        publish = f.get("latency_ms", {}).get("publish", {})
        backlog_peak = max((b for b in f.get("timeline", {}).get("backlog", []) if b is not None), default=None)
        growth = probe.peak_growth()
        if alarm is None:
            expectation = "accepts every job; memory grows with the backlog"
            met = f.get("rejected", 0) == 0 and (growth or 0) > 0
        else:
            expectation = f"memory alarm at idle + {HEADROOM_MB} MB blocks publishers (publishes wait > 1 s)"
            met = (publish.get("max") or 0) > 1000
        note = (f"peak backlog {backlog_peak}, memory growth {growth} MB, publish {of_summary(publish, 'p99')}, "
                f"max {publish.get('max')} ms, refused {f.get('rejected', 0)}")
        if alarm is not None:  # "refused 0" alone would read as "no harm done"
            note += (f": the alarm blocks publishers rather than refusing them, so a publish waited up to "
                     f"{(publish.get('max') or 0) / 1000:,.1f} s")
        attach(result, path, expectation, met, memory_samples=probe.samples, memory_growth_mb=growth,
               idle_rss_mb=idle)
        rows.append(Row("backpressure", kind, "producers faster than consumers", f.get("lost"), f.get("duplicated"),
                        None, expectation, met, note, str(path) if path else None))
    return rows


def _memory_full(session: Session) -> list[Row]:
    rows = []
    base = Scenario(profile="heavy_workflow_execution", mode="closed", time_scale=0.1,
                    duration_s=session.size(8, 5), warmup_s=0.5, producers=1, consumers=2, concurrency=16,
                    max_backlog=10**9, drain_timeout_s=60)
    for driver in session.drivers(can_crash=True):
        for policy in driver.memory_policies:
            instance = session.brokers.fresh(driver.kind, dict(policy.server))
            slug = policy.name.rsplit(" ", 1)[-1]
            scenario = base.with_(broker=driver.kind, label=f"backpressure-maxmemory-{slug}",
                                  broker_options=dict(policy.worker_options))
            result, path = run(scenario, url=instance.url, out=session.out, progress=session.progress)
            f = result["figures"] or {}
            evicted = policy.count_evicted(instance.url) if policy.count_evicted else None
            if policy.refuses_producers:
                met = f.get("lost") == 0 and f.get("duplicated") == 0 and f.get("rejected", 0) > 0
            else:
                met = True  # a finding either way: the row says what happened
            failed = (result.get("final_stats") or {}).get("failed")
            note = f"refused {f.get('rejected', 0)}, evicted keys {evicted}, failed {failed}"
            if not policy.refuses_producers and not (f.get("duplicated") or failed):
                note += "; no double run seen this time (no running job's lock was evicted)"
            attach(result, path, policy.expectation, met, evicted_keys=evicted, failed=failed)
            rows.append(Row("backpressure", driver.kind, policy.name, f.get("lost"), f.get("duplicated"),
                            None, policy.expectation, met, note, str(path) if path else None))
    return rows


def _held_alarm(session: Session) -> list[Row]:
    """Part C: a memory alarm held longer than the producer's confirm timeout, mid-window. The
    producer is blocked; after the timeout it gives its unconfirmed jobs back IN DOUBT (they
    were sent, and the broker may queue them once the alarm clears; the adapter never resends
    them); when the alarm clears, acceptances resume and are counted: lost and duplicated stay
    true after the alarm, and the run shows what became of the jobs in doubt.

    The alarm is held ``hold_s`` from the moment it is in force, and the load runs long enough
    around it: raising it takes a rabbitmqctl call, which takes seconds on a loaded machine, so
    the call is timed on the node first and the schedule leaves three times that for it."""
    rows = []
    timeout_s = session.size(30, 2)            # the producer's confirm timeout (the adapter's default: 30 s)
    hold_s = timeout_s + 5                     # a 35 s alarm in a full run
    for driver in session.drivers(can_crash=True):
        alarm = driver.memory_alarm
        if alarm is None or alarm.hold is None:
            continue
        node = session.brokers.fresh(driver.kind, dict(alarm.server))
        started = time.monotonic()
        alarm.hold(node)()  # raised and cleared once, untimed load: how long the calls take here now
        slack = 3 * (time.monotonic() - started)
        alarm_at = 3.0
        base = Scenario(profile="mix", mode="open", rate=200, warmup_s=1.0, duration_s=alarm_at + slack + hold_s + 6,
                        producers=1, consumers=2, concurrency=4, drain_timeout_s=60)
        clear: list[Any] = []
        when: dict[str, float] = {}

        def held(context: Any, node: Any = node, hold: Any = alarm.hold, clear: list[Any] = clear,
                 when: dict[str, float] = when) -> str:
            clear.append(hold(node))
            when["raised"] = context.elapsed()
            time.sleep(hold_s)
            clear.pop()()
            when["cleared"] = context.elapsed()
            return f"memory alarm (watermark 1 byte) in force from {when['raised']:.1f} s, cleared after {hold_s:.0f} s"

        scenario = base.with_(broker=driver.kind, label=f"backpressure-held-alarm-{driver.kind}",
                              broker_options={"confirm_timeout_s": timeout_s, "reconnect_for_s": 60.0})
        try:
            result, path = run(scenario, url=node.url, out=session.out, progress=session.progress,
                               actions=[Action(alarm_at, held)])
        finally:
            while clear:
                clear.pop()()
        f = result["figures"] or {}
        accepted = f.get("timeline", {}).get("accepted_per_s", [])
        raised, cleared = when.get("raised", alarm_at), when.get("cleared", alarm_at + hold_s)
        before = sum(accepted[:int(raised)])
        during = sum(accepted[int(raised) + 1:int(cleared)])
        after = sum(accepted[int(cleared) + 1:])
        doubt, outcome = f.get("in_doubt", 0), f.get("in_doubt_outcome", {})
        expectation = (f"a {hold_s:.0f} s memory alarm (confirm timeout {timeout_s:.0f} s): unconfirmed jobs are "
                       "given back in doubt (not refused), acceptances resume after it; lost 0, duplicated 0, "
                       "refused but ran 0")
        met = (f.get("lost") == 0 and f.get("duplicated") == 0 and doubt > 0 and after > 0
               and not f.get("refused_ran"))
        note = (f"accepted before the alarm {before}, during {during}, after {after}; in doubt {doubt} "
                f"(ran {outcome.get('ran', 0)} once the alarm cleared, never ran {outcome.get('never_ran', 0)}); "
                f"refused {f.get('rejected', 0)}; accepted in all {f.get('accepted')}")
        attach(result, path, expectation, met, accepted_before=before, accepted_during=during,
               accepted_after=after, alarm_at_s=round(raised, 3), alarm_s=round(cleared - raised, 3))
        rows.append(Row("backpressure", driver.kind, f"memory alarm held {hold_s:.0f} s", f.get("lost"),
                        f.get("duplicated"), None, expectation, met, note, str(path) if path else None))
    return rows


def run_scenario(session: Session) -> list[Row]:
    return _growth(session) + _memory_full(session) + _held_alarm(session)
