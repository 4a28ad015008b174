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
    resumed: bool | None = None          # replication rows: False when acceptances never came back
    in_doubt: int | None = None          # jobs the broker may hold: the producer could not know
    refused_ran: int | None = None       # refused, yet ran: the adapter's refusal was untrue
    level: str = ""                      # the durability level its setting gives (brokers/registry.py), if any
    client: str = ""                     # a contender's name (brokers/clients.py) when its roles ran, else ours

    @property
    def who(self) -> str:
        """The broker column: the server, and the contender when one ran instead of our adapter."""
        return f"{self.broker} · {self.client}" if self.client else self.broker

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcome_words(figures: dict[str, Any]) -> str:
    """What became of the jobs that were not simply accepted, in words (empty when all were)."""
    doubt, refused, refused_ran = figures.get("in_doubt", 0), figures.get("rejected", 0), figures.get("refused_ran", 0)
    parts = []
    if doubt:
        o = figures.get("in_doubt_outcome", {})
        parts.append(f"in doubt {doubt:,} (ran {o.get('ran', 0):,}, ran twice {o.get('ran_twice', 0):,}, "
                     f"never ran {o.get('never_ran', 0):,})")
    if refused:
        parts.append(f"refused {refused:,}" + (f", of which {refused_ran:,} ran anyway: a refusal that was "
                                               "untrue (a defect)" if refused_ran else ", none of which ran"))
    if figures.get("held_at_end"):
        parts.append(f"still held by the broker when the run gave up {figures['held_at_end']:,} (counted lost, "
                     "they may yet run)")
    return "; ".join(parts)


def with_outcomes(row: Row) -> Row:
    """The row with the in-doubt and refused-but-ran counts of its results file. A refused job
    that ran means the adapter told its caller something untrue: the row's expectation is then
    not met, whatever else it measured."""
    if not row.results_file or not Path(row.results_file).is_file():
        return row
    try:
        figures = json.loads(Path(row.results_file).read_text()).get("figures") or {}
    except (OSError, ValueError):
        return row
    if "in_doubt" not in figures:  # a results file older than run/3, or one measured outside the runner
        return row
    row.in_doubt, row.refused_ran = figures["in_doubt"], figures.get("refused_ran", 0)
    words = outcome_words(figures)
    if words and words not in row.note:
        row.note = f"{row.note}; {words}" if row.note else words
    if row.refused_ran:
        row.met = False
        _mark_unmet(Path(row.results_file))
    return row


def _mark_unmet(path: Path) -> None:
    """The results file says what the row says: its expectation was not met."""
    result = json.loads(path.read_text())
    if result.get("fault", {}).get("met"):
        result["fault"]["met"] = False
        result["fault"]["why_unmet"] = "refused jobs ran: the producer's caller was told something untrue"
        path.write_text(json.dumps(result, indent=1))


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
            cluster = replication.new_cluster()
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
    clients: list[str] = field(default_factory=list)  # contenders run beside our adapters (brokers.clients)
    ours: bool = True  # False: scenarios that take contenders run only the contenders

    def size(self, full: float, small: float) -> float:
        return small if self.small else full

    def drivers(self, *, can_crash: bool = False) -> list[registry.Driver]:
        """The session's drivers; ``can_crash``: only kinds whose brokers and clients are
        processes that can be killed."""
        found = [registry.get(kind) for kind in self.kinds]
        return [d for d in found if d.can_crash or not can_crash]

    def pairs(self, *, can_crash: bool = False) -> list[tuple[registry.Driver, str]]:
        """(driver, client) for every run of a scenario that takes contenders: each kind with our
        adapter (client ""), then with each contender of the session that speaks to its server.
        A contender's roles are processes, so they can always be killed."""
        from brokers import clients

        chosen = [clients.get(name) for name in self.clients]
        return [(d, c) for d in self.drivers(can_crash=can_crash)
                for c in [*([""] if self.ours else []), *(c.name for c in chosen if c.server == d.kind)]]


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
