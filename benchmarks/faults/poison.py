"""Scenario 4, poison jobs: jobs that always fail and raw malformed payloads, mixed into
healthy load (closed loop), against the same load without them.

Expectation: every poison job ends failed (BullMQ's failed set / RabbitMQ's dead-letter queue)
after its 3 attempts, every malformed payload at once, each with its reason; the workers go on;
healthy throughput drops about as much as the extra work (retries) costs, no more.
"""

from __future__ import annotations

from typing import Any

from ..harness.roles import POISON
from ..harness.runner import run
from ..harness.scenario import Scenario
from .common import Row, Session, attach

POISON_SHARE, MALFORMED_SHARE = 0.10, 0.02


def _healthy_per_s(result: dict[str, Any]) -> float:
    f = result["figures"]
    done = sum(s.get("count", 0) for name, s in f["per_type"].items() if name != POISON)
    return round(done / f["window_s"], 1)


def run_scenario(session: Session) -> list[Row]:
    rows = []
    base = Scenario(profile="mix", mode="closed", duration_s=session.size(8, 2), warmup_s=1, producers=1,
                    consumers=2, concurrency=8, max_backlog=1500, drain_timeout_s=40)
    for driver in session.drivers():
        broker = driver.kind
        url = session.brokers.default_instance(broker).url
        clean, _ = run(base.with_(broker=broker, label=f"poison-baseline-{broker}"), url=url, out=session.out,
                       progress=session.progress)
        malformed = MALFORMED_SHARE if driver.inject_raw is not None else 0.0
        dirty, path = run(base.with_(broker=broker, label=f"poison-{broker}", poison_share=POISON_SHARE,
                                     malformed_share=malformed),
                          url=url, out=session.out, progress=session.progress)
        f = dirty["figures"] or {}
        final = dirty.get("final_stats") or {}
        bad = f.get("poison_sent", 0) + f.get("malformed_sent", 0)
        failed = final.get("failed")
        poison_runs = f.get("retry_runs", 0)
        healthy_clean, healthy_dirty = _healthy_per_s(clean), _healthy_per_s(dirty)
        expectation = (f"all {POISON_SHARE:.0%} poison jobs fail after 3 attempts and all {malformed:.0%} "
                       "malformed ones at once, into failed/dead-letter; workers go on")
        met = (failed == bad and poison_runs == 2 * f.get("poison_sent", 0) and f.get("lost") == 0
               and not dirty["errors"] and not clean["errors"])
        note = (f"failed {failed} of {bad} bad jobs ({f.get('poison_sent')} poison, {f.get('malformed_sent')} "
                f"malformed); retry runs {poison_runs}; healthy jobs {healthy_clean:,.0f}/s without, "
                f"{healthy_dirty:,.0f}/s with poison")
        attach(dirty, path, expectation, met, failed=failed, bad_jobs=bad, healthy_per_s_without=healthy_clean,
               healthy_per_s_with=healthy_dirty)
        rows.append(Row("poison jobs", broker, f"{POISON_SHARE:.0%} poison + {malformed:.0%} malformed",
                        f.get("lost"), f.get("duplicated"), None, expectation, met, note,
                        str(path) if path else None))
    return rows
