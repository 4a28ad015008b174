"""The default comparison, as workloads: the mix and each job type alone, each measured twice,
closed loop (maximum throughput, backlog bounded) and open loop at a fixed rate (latency
without coordinated omission). Workloads name no broker; :func:`on_brokers` runs each on every
selected broker, interleaved (A B A B...), so that drift on a shared machine hits all alike."""

from __future__ import annotations

from typing import Sequence

from .scenario import Scenario
from .workloads import HEAVY, STATS, USER_VARS

# Open-loop rates that both compared brokers sustain on a 2-core machine with the default consumers.
DEFAULT_RATES = {"mix": 300.0, HEAVY: 120.0, USER_VARS: 500.0, STATS: 100.0}
PROFILES_IN_ORDER = ("mix", HEAVY, USER_VARS, STATS)


def default_workloads(scale: float = 1.0) -> list[Scenario]:
    """Closed + open loop for every profile, bound to no broker. ``scale`` lengthens or shortens
    every run. The runs are short so that three repetitions of each (``brokerbench run``'s
    default) fit in four minutes here: the spread across them says how far to trust a figure.
    A closed loop holds at most 500 jobs in the broker: enough to keep the consumers busy
    (the harness tops it up every 50 ms), little to drain after the window."""
    out = []
    for profile in PROFILES_IN_ORDER:
        out.append(Scenario(profile=profile, mode="closed", duration_s=2.0 * scale, warmup_s=0.5 * scale,
                            max_backlog=500, drain_timeout_s=20))
        out.append(Scenario(profile=profile, mode="open", rate=DEFAULT_RATES[profile], duration_s=2.5 * scale,
                            warmup_s=0.5 * scale, drain_timeout_s=20, burst_every_s=min(2.0, 2.0 * scale)))
    return out


def on_brokers(workloads: Sequence[Scenario], kinds: Sequence[str]) -> list[Scenario]:
    """Each workload on each broker kind, in that order (a workload already bound to a broker
    runs on that one only)."""
    out = []
    for workload in workloads:
        out += [workload] if workload.broker else [workload.on(kind) for kind in kinds]
    return out
