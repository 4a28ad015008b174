"""What a run is: one dataclass, loadable from a JSON or TOML file, written back into results."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from brokers import registry

from .workloads import PROFILES

MODES = ("closed", "open", "sweep", "drain")


@dataclass(frozen=True)
class Scenario:
    """One benchmark run: a workload (what to send, how, for how long) on one broker kind.

    broker    a registered broker kind (``brokers.registry``), or "" for a workload not yet
              bound to a broker: scenario files and the default suite name workloads, and
              ``brokerbench run`` runs each on every selected broker (:meth:`on`).

    mode      closed: producers publish as fast as they can while the backlog stays under
                      ``max_backlog``: every 50 ms the harness reads the broker's backlog and lets
                      them send the difference; throughput is what consumers finish.
                      This measures maximum throughput; its latencies are mostly queueing.
              open:   each producer sends at ``rate / producers`` jobs/s on a fixed schedule; latency
                      is measured from each job's intended send time as well as its actual one.
              sweep:  open-loop steps at rising rates (``sweep_rates``, or ``rate`` times
                      ``sweep_factor`` each step) until one is not sustainable; gives the latency
                      curve and the maximum sustainable throughput.
              drain:  producers pre-fill ``drain_jobs`` jobs, then consumers drain them.
    A run lasts ``warmup_s`` (not counted) + ``duration_s``, then consumers get up to
    ``drain_timeout_s`` to finish what was sent; every run stops by itself.

    durability  the durability level the run was bound to, named by what "accepted" promises
                (``brokers.registry.level_keys()``: memory, second, disk, majority, or a variant
                such as disk:quorum; see :mod:`benchmarks.harness.durability`), "" when the
                adapter options were given as they are. An old level name (in-memory,
                durable, strict) is refused with what it meant.
    repetition  which repetition of its cell this run is (1..k), 0 when not repeated.
    client    the client library whose producers and workers run (``brokers.clients``): "" or the
              kind's own name for our adapter, or a contender that speaks to this kind's server
              (``bullmq-node`` on redis, ``amqplib-node`` on rabbitmq), run through the role
              protocol (:mod:`benchmarks.contenders.protocol`).
    pin_cpus    run the broker and the clients on separate CPUs (see
                :mod:`benchmarks.harness.pinning`: only a broker brokerbench started is pinned);
                off by default.
    awake_cpus  hold every CPU out of idle states while the run measures (a PM QoS request:
                :mod:`benchmarks.harness.cpu_idle`), so round trips do not pay a VM's wake-ups;
                off by default, recorded in ``environment.cpu_pinning.idle``.
    """

    broker: str = ""
    profile: str = "mix"
    mode: str = "closed"
    rate: float = 200.0
    duration_s: float = 10.0
    warmup_s: float = 2.0
    producers: int = 1
    consumers: int = 2
    concurrency: int = 16
    prefetch: int | None = None
    publish_batch: int | None = None      # jobs per publish call; default 1 open loop, 50 closed loop
    time_scale: float = 0.01
    service_factor: float = 1.0
    seed: int = 1
    drain_jobs: int = 5000
    max_backlog: int = 2000
    drain_timeout_s: float = 30.0
    sweep_rates: tuple[float, ...] = ()
    sweep_factor: float = 1.5
    sweep_max_steps: int = 8
    p99_limit_ms: float = 1000.0
    burst_every_s: float = 2.0
    poison_share: float = 0.0             # share of jobs that always fail (3 attempts, 20 ms backoff)
    malformed_share: float = 0.0          # share of raw non-JSON messages written past the producer
    broker_options: dict[str, Any] = field(default_factory=dict)
    execution: str = "auto"               # processes, threads (memory broker), or auto
    label: str = ""
    durability: str = ""
    repetition: int = 0
    pin_cpus: bool = False
    client: str = ""
    awake_cpus: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.broker:
            try:
                driver = registry.get(self.broker)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                if driver.in_process and self.execution == "processes":
                    problems.append(f"{driver.label} lives in one process: use execution 'threads'")
        if self.client:
            from brokers import clients

            try:
                client = clients.get(self.client)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                if self.broker and client.server != self.broker:
                    problems.append(f"client {self.client} speaks to {client.server}, not {self.broker}")
                if client.external and self.malformed_share:
                    problems.append(f"{client.label} cannot take raw messages: malformed_share must be 0")
        if self.profile not in PROFILES:
            problems.append(f"profile must be one of {tuple(PROFILES)}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}")
        if self.mode in ("open", "sweep") and not self.rate > 0:
            problems.append("rate must be > 0 for open loop and sweeps")
        if self.producers < 1 or self.consumers < 1 or self.concurrency < 1:
            problems.append("producers, consumers and concurrency must be >= 1")
        if self.duration_s <= 0 or self.warmup_s < 0 or self.drain_timeout_s <= 0:
            problems.append("duration_s and drain_timeout_s must be > 0, warmup_s >= 0")
        if not (0 <= self.poison_share < 1 and 0 <= self.malformed_share < 1):
            problems.append("poison_share and malformed_share must be in [0, 1)")
        if self.durability:
            try:
                registry.check_level(self.durability)
            except ValueError as exc:
                problems.append(f"{exc} (or empty)")
        if self.repetition < 0:
            problems.append("repetition must be >= 0")
        if self.execution not in ("auto", "processes", "threads"):
            problems.append("execution must be auto, processes or threads")
        if problems:
            raise ValueError("invalid scenario: " + "; ".join(problems))
        object.__setattr__(self, "sweep_rates", tuple(float(r) for r in self.sweep_rates))

    @property
    def threads(self) -> bool:
        """Roles run as threads sharing one adapter (in-process brokers), not as processes."""
        if self.execution == "threads":
            return True
        return self.execution == "auto" and bool(self.broker) and registry.get(self.broker).in_process

    def on(self, kind: str) -> "Scenario":
        """This workload on broker ``kind`` (a label gets the kind appended, so files differ)."""
        return replace(self, broker=kind, label=f"{self.label}-{kind}" if self.label else "")

    @property
    def batch(self) -> int:
        if self.publish_batch:
            return self.publish_batch
        return 1 if self.mode in ("open", "sweep") else 50

    @property
    def external(self) -> bool:
        """Its roles are a contender's processes (the role protocol), not our adapters."""
        if not self.client or self.client == self.broker:
            return False
        from brokers import clients

        return clients.get(self.client).external

    @property
    def name(self) -> str:
        base = self.label or f"{self.broker}-{self.profile}-{self.mode}"
        if self.client and self.client != self.broker and not self.label:
            base = f"{self.broker}-{self.client}-{self.profile}-{self.mode}"
        return base + (f"-r{self.repetition}" if self.repetition else "")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sweep_rates"] = list(self.sweep_rates)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Scenario":
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown scenario keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**raw)

    def with_(self, **changes: Any) -> "Scenario":
        return replace(self, **changes)


def load_scenarios(path: Path) -> list[Scenario]:
    """A file holding one scenario, or ``[[scenario]]`` tables / a JSON list of them."""
    text = path.read_text()
    raw: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    if isinstance(raw, dict) and "scenario" in raw:
        raw = raw["scenario"]
    items = raw if isinstance(raw, list) else [raw]
    return [Scenario.from_dict(item) for item in items]
