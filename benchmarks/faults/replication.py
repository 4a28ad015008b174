"""Scenario: replication and failover. What survives losing the node that holds the queue?

Each kind that can run replicated here (:attr:`brokers.registry.Driver.replication`) runs on a
private replicated broker (:mod:`brokers.clusters`): a Redis primary with 2 replicas and 3
Sentinels, every node with AOF fsynced before each reply (``appendfsync always``), and a 3-node
RabbitMQ cluster with quorum queues (each node fsyncs its log), so that every node keeps what
one node keeps at the level "disk". Every results file names the durability level of its
setting (WAIT 1 and the quorum queue: "majority"). Under closed-loop load (producers as
fast as the backlog allows, so a failover has jobs in flight to lose):

* **kill the leader**: SIGKILL the Redis primary (Sentinel promotes a replica) or the node
  leading the quorum queue (the other two elect a new leader); per replicated profile;
* **kill a follower** (a replica, a quorum follower): nothing should change but the load;
* **hang the leader**: SIGSTOP for 8 s, then SIGCONT. To its peers a stopped node looks cut
  off: they may fail over, while clients still connected to it wait. When it wakes, a Redis
  primary takes the writes its clients sent meanwhile until Sentinel demotes it (a split
  brain); a RabbitMQ leader finds a newer term and steps down;
* **partition the leader** (where the machine allows it: as root, see :mod:`brokers.netns`):
  cut off from its peers for 20 s while its clients still reach it, then healed.

Every row counts lost accepted jobs, duplicates, the longest stretch with no job accepted
(``unavailable_s``, from the producers' 100 ms acceptance counts) and the time until the broker
named a new leader (``failover_s``, polled by the scenario: Sentinel's answer for Redis, a live
follower's own Raft state for RabbitMQ, through ``rabbitmqctl eval``, which adds up to about a
second). The no-loss
profiles run 3 times (1 with ``--small``).

The cost of replication: the mix in closed loop (throughput) and open loop (p50/p99) on one
node vs the replicated profiles, each side's settings and level named in its row; the one-node
rows keep what each replicated node keeps (:attr:`brokers.registry.Replication.node_level`:
Redis AOF always; RabbitMQ persistent + confirms on a classic queue and a quorum queue of one
member), so the difference is the copies alone. Each side runs 3 times (1 with ``--small``),
the sides interleaved, and each figure is the median with its min-max.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from brokers import registry
from brokers.clusters import ClusterError, pause, resume
from brokers.registry import DurabilityProfile

from ..harness.durability import describe_profile
from ..harness.runner import run
from ..harness.scenario import Scenario
from ..harness.supervision import Action, RunContext
from .common import Row, Session, attach

FAULT_AT_S = 3.0       # seconds into the run, after warm-up
RESTART_AFTER_S = 2.0  # a killed node is started again this long after the failover
TENTH_S = 0.1


def _load(session: Session) -> Scenario:
    """Closed loop on light jobs: a backlog of up to 2,000 jobs and a stream of acceptances."""
    return Scenario(profile="user_variables_update", mode="closed", duration_s=session.size(14, 12), warmup_s=1,
                    producers=1, consumers=2, concurrency=4, max_backlog=2000, drain_timeout_s=90)


def _kill(cluster: Any, which: str, words: registry.Replication, record: dict[str, Any]) -> Any:
    def do(context: RunContext) -> str:
        queue = context.admin.queue
        node = cluster.leader(queue) if which == "leader" else cluster.follower(queue)
        name, word = cluster.name(node), words.leader if which == "leader" else words.follower
        record["fault_at_s"] = round(context.elapsed(), 3)
        node.kill()
        said = f"SIGKILL {word} {name}"
        if which == "leader":
            try:
                record["failover_s"] = round(cluster.wait_for_failover(node, queue), 2)
                said += f"; new {word} after {record['failover_s']:.1f} s"
            except ClusterError as exc:
                said += f"; no new {word}: {exc}"
        time.sleep(RESTART_AFTER_S)  # then the node comes back, as a supervisor would start it
        started = time.monotonic()
        cluster.heal()
        return said + f"; restarted, back in after {time.monotonic() - started:.1f} s"
    return do


def _held(cluster: Any, fault: str, hold_s: float, words: registry.Replication, record: dict[str, Any]) -> Any:
    """A fault held ``hold_s`` seconds on the leader, then undone: "hang" (SIGSTOP, then
    SIGCONT) or "partition" (cut off from its peers, then healed). Meanwhile the peers may fail
    over: ``record`` gets when the fault began and when a new leader was named."""
    def do(context: RunContext) -> str:
        queue = context.admin.queue
        node = cluster.leader(queue)
        record["fault_at_s"] = round(context.elapsed(), 3)
        started = time.monotonic()
        if fault == "hang":
            pause(node.pid)
            undo = partial(resume, node.pid)
        else:
            cluster.partition(node)
            undo = cluster.unpartition
        try:
            try:
                record["failover_s"] = round(cluster.wait_for_failover(node, queue, timeout=hold_s), 2)
            except ClusterError:
                record["failover_s"] = None
            time.sleep(max(0.0, hold_s - (time.monotonic() - started)))
        finally:
            undo()
        after = ("no new " + words.leader if record["failover_s"] is None
                 else f"new {words.leader} after {record['failover_s']:.1f} s")
        name = f"{words.leader} {cluster.name(node)}"
        if fault == "hang":
            return f"SIGSTOP {name} for {hold_s:.0f} s ({after}), SIGCONT"
        return f"partition: {name} cut off from its peers for {hold_s:.0f} s ({after}), healed"
    return do


def unavailable_s(result: dict[str, Any], fault_at_s: float, end_s: float | None = None) -> float | None:
    """The longest stretch after ``fault_at_s`` with no job accepted (100 ms steps), up to
    ``end_s`` (when the producers stopped; default: the last acceptance): how long producers
    could not get a job in. Measured to the end of the run, an outage that never ended counts
    in full (see :func:`resumed`), not as the best possible figure."""
    figures = result.get("figures")
    if not figures:
        return None
    tenths = figures.get("timeline", {}).get("accepted_per_100ms") or []  # absent when nothing was accepted
    start = int(fault_at_s / TENTH_S)
    if end_s is None:
        end = max((i for i, n in enumerate(tenths) if n), default=-1) + 1
    else:
        end = int(end_s / TENTH_S)
    series = list(tenths[start:end]) + [0] * max(0, end - max(len(tenths), start))
    longest = run_ = 0
    for n in series:
        run_ = run_ + 1 if n == 0 else 0
        longest = max(longest, run_)
    return round(longest * TENTH_S, 1)


NEVER_RESUMED_S = 1.0  # the run ended at least this long after the last acceptance...
STOPPED_WITHIN_S = 2.0  # ...which came at most this long after the fault (confirms already in flight)


def resumed(result: dict[str, Any], fault_at_s: float, end_s: float) -> bool:
    """Whether jobs were accepted again after the fault: False when acceptances stopped at the
    fault (the last one at most STOPPED_WITHIN_S after it) and the run ended at least
    NEVER_RESUMED_S later with none since. A quiet stretch that starts well after the fault is
    not this: in closed loop the producers also stop when the backlog is full."""
    tenths = (result.get("figures") or {}).get("timeline", {}).get("accepted_per_100ms") or []
    start, end = int(fault_at_s / TENTH_S), int(end_s / TENTH_S)
    last = max((i for i, n in enumerate(tenths[:end]) if n), default=-1)
    quiet_from = max(last + 1, start)
    stopped_at_fault = quiet_from <= start + STOPPED_WITHIN_S / TENTH_S
    return not (stopped_at_fault and end - quiet_from >= NEVER_RESUMED_S / TENTH_S)


def outage_words(gap: float | None, came_back: bool) -> str:
    """The stretch with nothing accepted, in words."""
    if gap is None:
        return "acceptances not recorded"
    if not came_back:
        return f"no job accepted from the fault to the end of the run ({gap:g} s): acceptances never resumed"
    return f"no job accepted for {gap:g} s"


def _expectation(fault: str, profile: DurabilityProfile) -> str:
    """What the row expects, in words; a no-loss profile's promise is quoted whole, caveats and
    sources included (WAIT's: it narrows the loss window, it does not make failover strongly
    consistent), as the report's replication table and notebook 05 print it."""
    if fault == "follower":
        return "lost 0: a copy is gone, the leader goes on"
    if profile.no_loss:
        return "lost 0: " + profile.promise
    return "may lose accepted jobs (asynchronous replication)"


HOLD_S = {"hang": 8.0, "partition": 20.0}


def _durability(profile: DurabilityProfile, replication: registry.Replication,
                topology: str | None = None) -> dict[str, Any]:
    """A results file's durability section for a run on the replicated broker (``topology``,
    as it describes itself) or, when None, on one node: the setting's level and promise, the
    settings each node ran (``node_server``) and the level each node keeps on its own
    (``node_level``), which the cost rows pair one node and copies by."""
    out = describe_profile(profile, f"private: {topology or 'one node'}")
    if topology is None:
        out.update(node_server=dict(profile.server), node_level=registry.split_level(profile.level)[0])
    else:
        out.update(node_server=dict(replication.server), node_level=replication.node_level)
    return out


def run_case(session: Session, kind: str, profile: DurabilityProfile, fault: str, attempt: int = 0,
             runs: int = 1) -> Row:
    """One failover: ``fault`` is "leader" (SIGKILL), "follower" (SIGKILL), "hang" (SIGSTOP)
    or "partition" (the leader cut off from its peers, its clients still reaching it)."""
    hold_s = HOLD_S.get(fault, 0.0)
    driver = registry.get(kind)
    words = driver.replication
    assert words is not None
    cluster = session.brokers.cluster(kind)
    record: dict[str, Any] = {"failover_s": None, "fault_at_s": None}
    if fault in HOLD_S:
        do = _held(cluster, fault, hold_s, words, record)
    else:
        do = _kill(cluster, fault, words, record)
    base = _load(session)
    base = base.with_(duration_s=base.duration_s + hold_s)
    # Workers with short locks (as the tests' fast recovery): a job a Redis worker settled on a
    # primary that died before replicating it is back in "active" on the new primary, and
    # comes back only when its lock expires and a stalled check sees it (BullMQ's defaults: up to 90 s).
    scenario = base.with_(broker=kind, label=f"replication-{fault}-{kind}", durability=profile.level,
                          broker_options={**profile.options, **driver.fast_recovery, "reconnect_for_s": 90.0})
    result, path = run(scenario, url=cluster.url, out=session.out, progress=session.progress,
                       actions=[Action(scenario.warmup_s + FAULT_AT_S, do)],
                       extra={"durability": _durability(profile, words, cluster.describe()["topology"])})
    f = result["figures"] or {}
    lost, dup = f.get("lost"), f.get("duplicated")
    fault_at = record["fault_at_s"] or scenario.warmup_s + FAULT_AT_S
    end_s = scenario.warmup_s + scenario.duration_s  # the producers' end: an outage is measured up to it
    gap = unavailable_s(result, fault_at, end_s)
    came_back = resumed(result, fault_at, end_s)
    expectation = _expectation(fault, profile)
    met = lost == 0 if (fault == "follower" or profile.no_loss) else lost is not None
    errors = [e for e in result["errors"] if "drain_timeout_s" not in e]
    what = {"leader": f"kill {words.leader}", "follower": f"kill {words.follower}",
            "hang": f"SIGSTOP {words.leader} {hold_s:.0f} s",
            "partition": f"partition {words.leader} {hold_s:.0f} s"}[fault]
    note = (f"run {attempt + 1}/{runs}; accepted {f.get('accepted')}, refused {f.get('rejected', 0)}, "
            f"in doubt {f.get('in_doubt', 0)}, redelivered {f.get('redelivered')}; {outage_words(gap, came_back)}")
    if fault != "follower":
        note += (f"; new {words.leader} after {record['failover_s']} s" if record["failover_s"] is not None
                 else f"; no new {words.leader} seen")
    if errors:
        note += "; errors: " + "; ".join(errors)
        met = False
    attach(result, path, expectation, met, profile=profile.name, fault=what, failover_s=record["failover_s"],
           fault_at_s=record["fault_at_s"],
           unavailable_s=gap, resumed=came_back, topology=cluster.describe())
    return Row("replication", kind, f"{profile.name}: {what}", lost, dup, None, expectation, met, note,
               str(path) if path else None, unavailable_s=gap, failover_s=record["failover_s"], resumed=came_back,
               level=profile.level)


def failover_rows(session: Session) -> list[Row]:
    repeats = 1 if session.small else 3
    rows: list[Row] = []
    for driver in session.drivers(can_crash=True):
        replication = driver.replication
        if replication is None:
            continue
        faults = ["leader"] if session.small else ["leader", "follower", "hang"]
        cluster = session.brokers.cluster(driver.kind)
        if not session.small:
            why_not = cluster.can_partition()
            if why_not is None:
                faults.append("partition")
            else:  # it could be, but not on this machine: say so
                rows.append(Row("replication", driver.kind, f"partition {replication.leader}: not run", None, None,
                                None, "a real partition of the leader", False, f"not run here: {why_not}"))
        for profile in replication.profiles:
            if session.small and not profile.no_loss:
                continue
            for fault in faults:
                if fault == "follower" and not profile.no_loss:
                    continue
                runs = repeats if profile.no_loss else 1
                rows += [run_case(session, driver.kind, profile, fault, i, runs) for i in range(runs)]
    return rows


def cost_rows(session: Session) -> list[Row]:
    """The mix on one node vs replicated: closed-loop jobs/s and open-loop p50/p99, each side
    run ``repeats`` times (3; 1 with ``--small``), the sides interleaved within a repetition so
    that drift hits them alike; each figure is the median with its min-max."""
    from ..results.summary import Spread, fmt_spread, percentile_spread

    repeats = 1 if session.small else 3
    closed = Scenario(profile="mix", mode="closed", duration_s=session.size(8, 4), warmup_s=1, producers=1,
                      consumers=2, concurrency=8, max_backlog=2000, drain_timeout_s=60)
    open_ = closed.with_(mode="open", rate=300)
    # driver, profile, url, topology, the results file's durability section
    sides: list[tuple[registry.Driver, DurabilityProfile, str, str, dict[str, Any]]] = []
    for driver in session.drivers(can_crash=True):
        replication = driver.replication
        if replication is None:
            continue
        for profile in replication.single_node:
            single = session.brokers.fresh(driver.kind, dict(profile.server))
            sides.append((driver, profile, single.url, "one node", _durability(profile, replication)))
        for profile in replication.profiles:
            cluster = session.brokers.cluster(driver.kind)
            topology = cluster.describe()["topology"]
            sides.append((driver, profile, cluster.url, topology, _durability(profile, replication, topology)))
    found: dict[int, dict[str, list[dict[str, Any]]]] = {i: {"closed": [], "open": []} for i in range(len(sides))}
    paths: dict[int, list[Any]] = {i: [] for i in range(len(sides))}
    for rep in range(1, repeats + 1):
        for i, (driver, profile, url, topology, durability) in enumerate(sides):
            for mode, scenario in (("closed", closed), ("open", open_)):
                result, path = run(scenario.with_(broker=driver.kind, label=f"replication-cost-{mode}-{driver.kind}",
                                                  broker_options=dict(profile.options), durability=profile.level,
                                                  repetition=rep if repeats > 1 else 0),
                                   url=url, out=session.out, progress=session.progress,
                                   extra={"durability": durability})
                found[i][mode].append(result["figures"] or {})
                paths[i].append(path)
                attach(result, path, "the price of the copies, measured", True, profile=profile.name,
                       topology=topology, cost_mode=mode)
    rows: list[Row] = []
    for i, (driver, profile, _, topology, durability) in enumerate(sides):
        jobs = Spread.of([f.get("throughput", {}).get("out_per_s") for f in found[i]["closed"]])
        e2e = [f.get("latency_ms", {}).get("end_to_end_intended", {}) for f in found[i]["open"]]
        node = ", ".join(f"{k} {v}" for k, v in durability["node_server"].items())
        note = (f"{registry.level_label(profile.level)}; {topology}" + (f" ({node} on each node)" if node else "")
                + f"; closed loop {fmt_spread(jobs)} jobs/s; open loop {open_.rate:.0f}/s: "
                f"{percentile_spread('p50', e2e)}, {percentile_spread('p99', e2e)}"
                + (f" (median of {repeats} runs, min-max)" if repeats > 1 else ""))
        every = found[i]["closed"] + found[i]["open"]
        lost = sum(f.get("lost", 0) for f in every)
        dup = sum(f.get("duplicated", 0) for f in every)
        rows.append(Row("replication cost", driver.kind, profile.name, lost, dup, None,
                        "the price of the copies, measured (no fault)", lost == 0, note,
                        str(paths[i][0]) if paths[i] and paths[i][0] else None, level=profile.level))
    return rows


def run_scenario(session: Session) -> list[Row]:
    return failover_rows(session) + ([] if session.small else cost_rows(session))
