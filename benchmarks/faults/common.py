"""What every fault scenario shares: private brokers, the result row, the summary table.

Every scenario runs on PRIVATE broker instances (own ports, own data folders), never on the
shared ones: they kill, restart and reconfigure them. Scenarios loop over the session's broker
kinds (by default the compared ones in :mod:`brokers.registry`) and skip, by what a kind's
driver declares, the kinds a scenario cannot apply to (an in-process broker cannot crash).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from brokers import registry
from brokers.instances import PrivateInstance, private_instance

from ..harness import environment
from ..results import files

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Row:
    """One line of the scenarios table: what was expected, what was measured, whether it held."""

    scenario: str
    broker: str
    profile: str
    lost: int | None
    duplicated: int | None
    recovery_s: float | None
    expectation: str
    met: bool
    note: str = ""
    results_file: str | None = None
    unavailable_s: float | None = None   # replication rows: longest stretch with no job accepted
    failover_s: float | None = None      # replication rows: until the broker named a new leader

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PrivateBrokers:
    """Private instances for one session of scenarios: started on first use, reused, stopped at
    the end. One instance per (kind, configuration); :meth:`fresh` gives one of its own."""

    def __init__(self) -> None:
        self._shared: dict[tuple[str, str], PrivateInstance] = {}
        self._own: list[PrivateInstance] = []
        self._clusters: dict[str, Any] = {}

    def cluster(self, kind: str) -> Any:
        """The session's replicated broker of ``kind`` (see :mod:`brokers.clusters`): started on
        first use, made whole again (killed nodes restarted, paused ones resumed) on each later one."""
        replication = registry.get(kind).replication
        if replication is None:
            raise ValueError(f"{registry.get(kind).label} has no replicated setting")
        cluster = self._clusters.get(kind)
        if cluster is None:
            cluster = replication.cluster_class()()
            self._clusters[kind] = cluster
            cluster.start()
        else:
            cluster.heal()
        return cluster

    def instance(self, kind: str, config: dict[str, str] | None = None) -> PrivateInstance:
        """The session's instance of ``kind`` with ``config`` (started, or restarted if a
        scenario left it down)."""
        key = (kind, json.dumps(config or {}, sort_keys=True))
        instance = self._shared.get(key)
        if instance is None:
            instance = private_instance(kind, config)
            instance.start()
            self._shared[key] = instance
        elif instance.pid is None:
            instance.start()
        return instance

    def default_instance(self, kind: str) -> PrivateInstance:
        """The session's instance of ``kind`` with the kind's default settings."""
        return self.instance(kind)

    def fresh(self, kind: str, config: dict[str, str] | None = None) -> PrivateInstance:
        """An instance of its own, for a run that must start empty or reconfigures it
        (stopped with the others)."""
        instance = private_instance(kind, config)
        instance.start()
        self._own.append(instance)
        return instance

    def close(self) -> None:
        for instance in [*self._own, *self._shared.values(), *self._clusters.values()]:
            instance.cleanup()
        self._own.clear()
        self._shared.clear()
        self._clusters.clear()


@dataclass
class Session:
    """What a scenario gets: brokers, size, where results go, a progress callback, and the
    broker kinds to run on."""

    brokers: PrivateBrokers
    small: bool
    out: Path
    progress: Progress | None = None
    rows: list[Row] = field(default_factory=list)
    kinds: list[str] = field(default_factory=registry.compared_kinds)

    def size(self, full: float, small: float) -> float:
        return small if self.small else full

    def drivers(self, *, can_crash: bool = False) -> list[registry.Driver]:
        """The session's drivers; ``can_crash``: only kinds whose brokers and clients are
        processes that can be killed."""
        found = [registry.get(kind) for kind in self.kinds]
        return [d for d in found if d.can_crash or not can_crash]


def write_result(session: "Session", scenario: dict[str, Any], described: dict[str, Any], started: datetime,
                 expectation: str, met: bool, **figures: Any) -> str:
    """A results file for a scenario that measures outside the runner (its figures all in the
    fault section); returns its path."""
    result = files.build(scenario, status="ok", errors=[], environment=environment.capture(
        {scenario["broker"]: described}), measured=None, hist=None, started=started)
    path = files.write(result, session.out)
    attach(result, path, expectation, met, **figures)
    return str(path)


def attach(result: dict[str, Any], path: Path | None, expectation: str, met: bool, **figures: Any) -> None:
    """Add the scenario's own section (its expectation beside what it measured) to a results
    file, validate it, and write it again."""
    result["fault"] = {"expectation": expectation, "met": met, **figures}
    files.validate(result)
    if path is not None:
        path.write_text(json.dumps(result, indent=1))
