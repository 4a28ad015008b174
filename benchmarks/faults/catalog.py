"""The scenarios, by name, in the order ``brokerbench scenarios`` runs them."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from .common import Row, Session, with_outcomes

SCENARIOS: dict[str, tuple[str, str]] = {
    "worker-crash": ("benchmarks.faults.worker_crash", "SIGKILL a consumer mid-job: redelivery time, lost, duplicated"),
    "broker-crash": ("benchmarks.faults.broker_crash", "SIGKILL the broker under load, per durability profile"),
    "dropped-connections": ("benchmarks.faults.dropped_connections", "server-side connection kills under load"),
    "poison-jobs": ("benchmarks.faults.poison", "always-failing and malformed jobs mixed into healthy load"),
    "delays": ("benchmarks.faults.delays", "10,000 delayed and retried jobs: lateness; the TTL head-of-line pitfall"),
    "priorities": ("benchmarks.faults.priorities", "wait of high- vs low-priority jobs behind a backlog"),
    "backpressure": ("benchmarks.faults.backpressure", "producers faster than consumers; maxmemory policies"),
    "replication": ("benchmarks.faults.replication",
                    "lose the node holding the queue: Redis + Sentinel vs a 3-node RabbitMQ cluster; cost of copies"),
}


def scenario(name: str) -> Callable[[Session], list[Row]]:
    """The scenario's run function; every row it returns carries its in-doubt and refused-but-ran
    counts (:func:`.common.with_outcomes`: a refusal that was untrue fails the row)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    run_scenario = import_module(SCENARIOS[name][0]).run_scenario

    def run(session: Session) -> list[Row]:
        return [with_outcomes(row) for row in run_scenario(session)]
    return run
