"""Scenario 3, dropped connections: the broker closes every client connection, three times,
under steady load (Redis ``CLIENT KILL``; RabbitMQ ``rabbitmqctl close_connection``).

Expectation: clients reconnect by themselves and nothing accepted is lost. Duplicates are
allowed: a RabbitMQ consumer's unacked jobs are redelivered when its connection closes, and a
Redis command whose reply was lost is sent again.
"""

from __future__ import annotations

import os
from typing import Any

from brokers import registry

from ..harness.runner import run
from ..harness.scenario import Scenario
from ..harness.supervision import Action, RunContext
from .common import Row, Session, attach


def _drop(driver: registry.Driver, instance: Any) -> Any:
    def do(context: RunContext) -> str:
        assert driver.drop_connections is not None
        killed = driver.drop_connections(context.url, instance, spare_pid=os.getpid())  # the runner's stay
        return f"closed {killed} client connections from the broker side"
    return do


def run_scenario(session: Session) -> list[Row]:
    rows = []
    duration = session.size(12, 7)
    base = Scenario(profile="mix", mode="open", rate=session.size(300, 200), duration_s=duration, warmup_s=1,
                    producers=2, consumers=2, concurrency=8, drain_timeout_s=40)
    for driver in session.drivers(can_crash=True):
        if driver.drop_connections is None:
            continue
        instance = session.brokers.default_instance(driver.kind)
        times = [1 + duration * k / 4 for k in (1, 2, 3)]
        result, path = run(base.with_(broker=driver.kind, label=f"dropped-connections-{driver.kind}",
                                      broker_options={"reconnect_for_s": 30.0}),
                           url=instance.url, out=session.out, progress=session.progress,
                           actions=[Action(t, _drop(driver, instance)) for t in times])
        f = result["figures"] or {}
        reconnects = (f.get("worker") or {}).get("reconnects", 0)
        dropped = [e for e in result.get("events", []) if e["what"].startswith("closed")]
        expectation = "lost 0; clients reconnect by themselves"
        met = f.get("lost") == 0 and len(dropped) == 3 and not result["errors"]
        note = f"{len(dropped)} drops ({', '.join(e['what'].split()[1] for e in dropped)} connections each); " \
               f"worker reconnects {reconnects}; redelivered {f.get('redelivered')}"
        if result["errors"]:
            note += "; errors: " + "; ".join(result["errors"])
        attach(result, path, expectation, met, drops=len(dropped), worker_reconnects=reconnects)
        rows.append(Row("dropped connections", driver.kind, "3 drops under load", f.get("lost"), f.get("duplicated"),
                        None, expectation, met, note, str(path) if path else None))
    return rows
