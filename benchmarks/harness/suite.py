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


# The reference's lengths (issue "The reference measures the brokers"): long enough that a cell's
# figures do not hang on a few hundred samples, and every cell 3 times, interleaved.
REFERENCE_CLOSED_S = 30.0
REFERENCE_OPEN_S = 60.0
REFERENCE_WARMUP_S = 5.0
REFERENCE_REPEAT = 3
SCALING_CONSUMERS = (1, 2, 4)


def reference_workloads(scale: float = 1.0) -> list[Scenario]:
    """The default comparison at reference length: closed loop 30 s and open loop 60 s after a
    5 s warm-up (``scale`` shortens them for tests only)."""
    return [w.with_(duration_s=(REFERENCE_CLOSED_S if w.mode == "closed" else REFERENCE_OPEN_S) * scale,
                    warmup_s=REFERENCE_WARMUP_S * scale, drain_timeout_s=60.0,
                    burst_every_s=min(2.0, 2.0 * scale) if w.mode == "open" else w.burst_every_s)
            for w in default_workloads()]


NOOP_LABELS = ("drain", "latency")  # the contender runs of no-op jobs (the old side benchmarks)
CONTENDERS_LABEL = "contenders"     # the contender part's runs of the mix (ours among them: not the headline's)


def contender_workloads(scale: float = 1.0) -> list[Scenario]:
    """What the real clients run beside ours in the reference, interleaved client by client:

    - the mix, closed and open loop, 30 s each (the open loop shorter than the headline's 60 s:
      these rows compare clients at p50 and p99, not p99.9);
    - ``drain``: one worker draining 20,000 no-op jobs (``service_factor`` 0), the queue filled
      one job per call, each awaited: the fill is the seed's bot path (one ``add`` per incoming
      message), the drain the worker's pace;
    - ``latency``: no-op jobs end to end at 1,000 jobs/s for 10 s, one worker of width 50.

    Each is labelled (``contenders``, ``drain``, ``latency``), so our adapter's runs here stay
    out of the headline. The last two are the former side benchmarks (``brokerbench drain``, ``enqueue``, ``latency``)
    as ordinary runs of every client."""
    mix = [w.with_(duration_s=REFERENCE_CLOSED_S * scale, label=CONTENDERS_LABEL)
           for w in reference_workloads(scale) if w.profile == "mix"]
    noop = Scenario(profile=USER_VARS, service_factor=0.0, producers=1, consumers=1, concurrency=50, prefetch=50,
                    drain_timeout_s=120.0)
    drain = noop.with_(mode="drain", drain_jobs=max(int(20_000 * scale), 200), publish_batch=1, label="drain")
    latency = noop.with_(mode="open", rate=1000.0, duration_s=10.0 * scale, warmup_s=2.0 * scale, label="latency")
    return mix + [drain, latency]


def durability_workloads(levels: Sequence[str], scale: float = 1.0) -> list[Scenario]:
    """The mix, closed and open loop at reference length, at each durability level in
    ``levels`` (labelled ``durability-<level>``): what each promise costs, side by side."""
    mix = [w for w in reference_workloads(scale) if w.profile == "mix"]
    return [w.with_(durability=level, label=f"durability-{level.replace(':', '-')}") for level in levels for w in mix]


def sweep_workload(scale: float = 1.0) -> Scenario:
    """The mix, open loop at rising rates (x1.5 a step from 200 jobs/s) until a step is not
    sustainable: the latency curve and the knee. Steps last 15 s (each is one point of a curve,
    read with its sample count), not the 60 s of a headline cell."""
    return Scenario(profile="mix", mode="sweep", rate=200.0, sweep_factor=1.5, sweep_max_steps=8,
                    duration_s=15.0 * scale, warmup_s=3.0 * scale, drain_timeout_s=60.0, label="sweep")


def scaling_workloads(scale: float = 1.0) -> list[Scenario]:
    """Closed loop, the mix, 1, 2 and 4 consumer processes of concurrency 8, 30 s each."""
    return [Scenario(profile="mix", mode="closed", consumers=n, concurrency=8, duration_s=REFERENCE_CLOSED_S * scale,
                     warmup_s=REFERENCE_WARMUP_S * scale, drain_timeout_s=60.0, label=f"scaling-{n}")
            for n in SCALING_CONSUMERS]


def on_brokers(workloads: Sequence[Scenario], kinds: Sequence[str]) -> list[Scenario]:
    """Each workload on each broker kind, in that order (a workload already bound to a broker
    runs on that one only)."""
    out = []
    for workload in workloads:
        out += [workload] if workload.broker else [workload.on(kind) for kind in kinds]
    return out
