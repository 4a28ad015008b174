"""Every figure the prose quotes, defined once as a function of a results folder.

Each function reads the files the reference report reads (file patterns and field values, as
written by the scenarios and `brokerbench reference`) and returns the figure exactly as the pages
print it. Where several repetitions exist a quote says which figure it takes: the median, the
range ("a-b"), the worst, or a total over the runs; a name ending in ``runs`` is how many runs a
total covers. Pages mark their figures with these names (see :mod:`.quotes`).
"""

from __future__ import annotations

import json
from datetime import datetime

from .quotes import QuoteError, Results, count, fixed, middle, quote, span

RUNS = "runs/*.json"
DURABILITY = "durability/*.json"
LEVELS = {"memory": "memory", "second": "second", "quorum": "disk:quorum"}
BROKERS = ("redis", "rabbitmq")


def _mix(r: Results, broker: str, field: str, pattern: str = RUNS, level: str = "disk") -> list[float]:
    """A field of every closed-loop mix run of ``broker`` at ``level`` (one per repetition)."""
    return r.values(pattern, field, scenario__broker=broker, scenario__profile="mix",
                    scenario__mode="closed", scenario__durability=level)


def _throughput(r: Results, broker: str, pattern: str = RUNS, level: str = "disk") -> list[float]:
    return _mix(r, broker, "figures.throughput.out_per_s", pattern, level)


def _per_cpu(r: Results, broker: str, pattern: str = RUNS, level: str = "disk") -> list[float]:
    return _mix(r, broker, "figures.jobs_per_broker_cpu_s", pattern, level)


def _spread_pct(values: list[float]) -> float:
    return (max(values) - min(values)) / middle(values) * 100


# --- the headline: the mix, closed loop, acknowledged on disk ---------------------------------

for _b in BROKERS:
    quote(f"headline.{_b}.mix_per_s", f"{_b}: median mix jobs/s, closed loop, on disk (runs/)")(
        lambda r, b=_b: count(middle(_throughput(r, b))))
    quote(f"headline.{_b}.mix_range", f"{_b}: lowest-highest mix jobs/s of the repetitions, on disk")(
        lambda r, b=_b: span(_throughput(r, b)))
    quote(f"headline.{_b}.per_broker_cpu_s", f"{_b}: median mix jobs per broker CPU-second, on disk")(
        lambda r, b=_b: count(middle(_per_cpu(r, b))))
    quote(f"headline.{_b}.spread_pct", f"{_b}: (highest - lowest) / median of the mix repetitions, %")(
        lambda r, b=_b: fixed(_spread_pct(_throughput(r, b))))


@quote("headline.mix_ratio", "Redis median mix jobs/s over RabbitMQ's, on disk")
def _headline_ratio(r: Results) -> str:
    return fixed(middle(_throughput(r, "redis")) / middle(_throughput(r, "rabbitmq")), 2)


@quote("headline.per_cpu_ratio", "Redis median mix jobs per broker CPU-second over RabbitMQ's, on disk")
def _cpu_ratio(r: Results) -> str:
    return fixed(middle(_per_cpu(r, "redis")) / middle(_per_cpu(r, "rabbitmq")), 2)


@quote("headline.repetitions", "repetitions of each headline cell")
def _repetitions(r: Results) -> str:
    return count(len(_throughput(r, "redis")))


# --- the mix at the other promises (durability/) ---------------------------------------------

for _name, _level in LEVELS.items():
    for _b in BROKERS:
        if (_b, _name) in (("rabbitmq", "second"), ("redis", "quorum")):
            continue  # RabbitMQ has no "within a second"; quorum queues are RabbitMQ's
        quote(f"durability.{_name}.{_b}.mix_per_s", f"{_b}: median mix jobs/s at '{_level}'")(
            lambda r, b=_b, lv=_level: count(middle(_throughput(r, b, DURABILITY, lv))))
        quote(f"durability.{_name}.{_b}.per_broker_cpu_s", f"{_b}: median mix jobs per broker CPU-s at '{_level}'")(
            lambda r, b=_b, lv=_level: count(middle(_per_cpu(r, b, DURABILITY, lv))))


# --- a broker killed (scenarios/broker-crash-*) -------------------------------------------

CRASH_PROFILES = {
    "redis": {"none": "no persistence", "everysec": "AOF everysec", "always": "AOF always"},
    "rabbitmq": {"transient": "transient messages", "no_confirms": "persistent, no confirms",
                 "confirms": "persistent + confirms", "quorum": "quorum + confirms"},
}

for _b, _profiles in CRASH_PROFILES.items():
    for _slug, _profile in _profiles.items():
        pattern = f"scenarios/broker-crash-{_b}-*.json"
        quote(f"broker_crash.{_b}.{_slug}.lost",
              f"{_b} '{_profile}' killed under load: accepted jobs lost (range over runs)")(
            lambda r, p=pattern, pr=_profile: span(r.values(p, "figures.lost", fault__profile=pr)))
        quote(f"broker_crash.{_b}.{_slug}.duplicated", f"{_b} '{_profile}' killed under load: jobs run twice (range)")(
            lambda r, p=pattern, pr=_profile: span(r.values(p, "figures.duplicated", fault__profile=pr)))
        quote(f"broker_crash.{_b}.{_slug}.runs", f"{_b} '{_profile}': how many broker-kill runs")(
            lambda r, p=pattern, pr=_profile: count(len(r.files(p, fault__profile=pr))))


# --- a worker killed (scenarios/worker-crash-*) -------------------------------------------

WORKER_LOCKS = {"defaults": "lock 30000 ms, stalled check 30000 ms (BullMQ's defaults)",
                "lock5": "lock 5000 ms, stalled check 5000 ms",
                "lock2": "lock 2000 ms, stalled check 1000 ms",
                "lock1": "lock 1000 ms, stalled check 500 ms"}

for _slug, _profile in WORKER_LOCKS.items():
    quote(f"worker_crash.redis.{_slug}.back_s",
          f"Redis, {_profile}: seconds from the kill until the last of its jobs ran again")(
        lambda r, pr=_profile: fixed(r.value("scenarios/worker-crash-redis-*.json", "fault.recovery_last_s",
                                             fault__profile=pr)))


@quote("worker_crash.rabbitmq.back_s", "RabbitMQ: seconds from the worker's kill until the last of its jobs ran again")
def _rabbit_worker(r: Results) -> str:
    return fixed(r.value("scenarios/worker-crash-rabbitmq-*.json", "fault.recovery_last_s"), 2)


# --- priorities (scenarios/priorities-*) --------------------------------------------------

for _b in BROKERS:
    pattern = f"scenarios/priorities-{_b}-*.json"
    quote(f"priorities.{_b}.urgent_max_ms", f"{_b}: the longest wait of any urgent job, ms")(
        lambda r, p=pattern: fixed(r.value(p, "fault.high_wait_ms.max")))
    quote(f"priorities.{_b}.urgent_n", f"{_b}: urgent jobs sent behind the backlog")(
        lambda r, p=pattern: count(r.value(p, "fault.high_wait_ms.count")))
    quote(f"priorities.{_b}.backlog_p50_s", f"{_b}: median wait of the low-priority backlog, s")(
        lambda r, p=pattern: fixed(r.value(p, "fault.low_wait_ms.p50") / 1000))


# --- memory full (scenarios/backpressure-maxmemory-*) -------------------------------------

for _slug, _policy in (("volatile_lru", "volatile-lru"), ("noeviction", "noeviction")):
    pattern = f"scenarios/backpressure-maxmemory-{_policy}-*.json"
    for _field in ("rejected", "lost", "duplicated", "accepted"):
        quote(f"eviction.{_slug}.{_field}", f"Redis full under maxmemory-policy {_policy}: jobs {_field}")(
            lambda r, p=pattern, f=_field: count(r.value(p, f"figures.{f}")))


@quote("eviction.volatile_lru.evicted", "Redis full under volatile-lru: keys evicted")
def _evicted(r: Results) -> str:
    return count(r.value("scenarios/backpressure-maxmemory-volatile-lru-*.json", "fault.evicted_keys"))


# --- replication (replication/) -------------------------------------------------------------

FAILOVERS = ("leader", "hang", "partition", "follower")


def _failovers(r: Results, broker: str, profile: str, faults: tuple[str, ...] = FAILOVERS) -> list[dict]:
    out: list[dict] = []
    for fault in faults:
        out += r.files(f"replication/replication-{fault}-{broker}-*.json", fault__profile=profile)
    return out


def _cut_off(r: Results, profile: str) -> list[dict]:
    """The Redis runs at ``profile`` whose primary hung or was cut off (not killed)."""
    return _failovers(r, "redis", profile, ("hang", "partition"))


QUORUM = "quorum queue + confirms (3 replicas)"
ASYNC = "async replication (BullMQ's way)"
WAIT = "WAIT 1"


@quote("replication.rabbitmq.runs",
      "RabbitMQ quorum (3 replicas): failover runs (leader killed, hung, cut off; follower killed)")
def _rq_runs(r: Results) -> str:
    return count(len(_failovers(r, "rabbitmq", QUORUM)))


@quote("replication.rabbitmq.lost", "RabbitMQ quorum (3 replicas): accepted jobs lost, all failover runs together")
def _rq_lost(r: Results) -> str:
    return count(sum(d["figures"]["lost"] for d in _failovers(r, "rabbitmq", QUORUM)))


@quote("replication.redis.wait.runs", "Redis + Sentinel with WAIT 1: failover runs")
def _wait_runs(r: Results) -> str:
    return count(len(_failovers(r, "redis", WAIT)))


@quote("replication.redis.wait.lost", "Redis + Sentinel with WAIT 1: accepted jobs lost, all failover runs together")
def _wait_lost(r: Results) -> str:
    return count(sum(d["figures"]["lost"] for d in _failovers(r, "redis", WAIT)))


@quote("replication.redis.async.lost_cut",
      "Redis async replication: jobs lost per run with the primary hung or cut off (range)")
def _async_lost(r: Results) -> str:
    return span(d["figures"]["lost"] for d in _cut_off(r, ASYNC))


@quote("replication.redis.async.runs_cut", "Redis async replication: runs with the primary hung or cut off")
def _async_runs(r: Results) -> str:
    return count(len(_cut_off(r, ASYNC)))


@quote("replication.redis.wait.unavailable_s",
      "Redis with WAIT 1: seconds no job was accepted, primary hung or cut off (range)")
def _wait_out(r: Results) -> str:
    return span((d["fault"]["unavailable_s"] for d in _cut_off(r, WAIT)), fixed)


@quote("replication.redis.wait.in_doubt", "Redis with WAIT 1: jobs in doubt per run, primary hung or cut off (range)")
def _wait_doubt(r: Results) -> str:
    return span(d["figures"]["in_doubt"] for d in _cut_off(r, WAIT))


@quote("replication.redis.wait.doubt_ran_twice", "Redis with WAIT 1: jobs in doubt that ran twice, all runs together")
def _wait_twice(r: Results) -> str:
    return count(sum(d["figures"]["in_doubt_outcome"]["ran_twice"]
                     for d in _cut_off(r, WAIT)))


@quote("replication.rabbitmq.unavailable_s",
      "RabbitMQ quorum: seconds no job was accepted when the leader was killed, hung or cut off (range)")
def _rq_out(r: Results) -> str:
    runs = _failovers(r, "rabbitmq", QUORUM, ("leader", "hang", "partition"))
    return span((d["fault"]["unavailable_s"] for d in runs), fixed)


def _cost(r: Results, broker: str, profile: str) -> float:
    return middle(r.values(f"replication/replication-cost-closed-{broker}-*.json", "figures.throughput.out_per_s",
                           fault__profile=profile))


COST = {"rabbitmq": {"quorum3": QUORUM, "classic1": "one node, classic + confirms",
                     "quorum1": "one node, quorum + confirms"},
        "redis": {"wait": WAIT, "async": ASYNC, "one": "one node, AOF always"}}

for _b, _profiles in COST.items():
    for _slug, _profile in _profiles.items():
        quote(f"replication.cost.{_b}.{_slug}",
              f"{_b} '{_profile}': median mix jobs/s, closed loop (replication-cost)")(
            lambda r, b=_b, pr=_profile: count(_cost(r, b, pr)))


@quote("replication.cost.rabbitmq.quorum3_vs_quorum1_pct",
      "RabbitMQ: throughput lost to 3 replicas against one quorum node, %")
def _rq_cost(r: Results) -> str:
    return fixed((1 - _cost(r, "rabbitmq", QUORUM) / _cost(r, "rabbitmq", COST["rabbitmq"]["quorum1"])) * 100, 0)


@quote("replication.cost.redis.wait_vs_one_pct", "Redis: throughput lost to WAIT 1 against one node at AOF always, %")
def _redis_cost(r: Results) -> str:
    return fixed((1 - _cost(r, "redis", WAIT) / _cost(r, "redis", COST["redis"]["one"])) * 100, 0)


# --- start-up (setup/) ----------------------------------------------------------------------

for _b in BROKERS:
    quote(f"setup.{_b}.start_s", f"{_b}: seconds from start to answering (setup)")(
        lambda r, b=_b: fixed(r.value("setup/*.json", f"start_s.{b}")))


# --- our clients against the official ones (contenders/: the drain runs) ----------------------


CONTENDERS = "contenders/*.json"


def _client_runs(r: Results, broker: str, client: str, **where: str) -> list[dict]:
    """One client's runs on ``broker`` in the contenders part that match ``where`` (ours: the
    client "" or the broker's name)."""
    runs = [d for d in r.files(CONTENDERS, scenario__broker=broker, **where)
            if (d["scenario"].get("client") or broker) == client]
    if not runs:
        said = ", ".join(f"{k.replace('__', '.')}={v}" for k, v in where.items())
        raise QuoteError(f"no run of client {client} on {broker} with {said} in contenders/")
    return runs


def _drain(r: Results, client: str) -> float:
    """The median drain rate of one client's drain runs on Redis."""
    return middle(d["drain"]["jobs_per_s"] for d in _client_runs(r, "redis", client, scenario__mode="drain"))


@quote("drain.ours_vs_official_bullmq",
      "our BullMQ-style worker's drain rate over the official Python bullmq worker's (medians)")
def _drain_ratio(r: Results) -> str:
    return fixed(_drain(r, "redis") / _drain(r, "bullmq-python"), 1)


@quote("drain.ours_vs_bullmq_node",
      "our BullMQ-style worker's drain rate over the official BullMQ worker's on Node (medians)")
def _drain_ratio_node(r: Results) -> str:
    return fixed(_drain(r, "redis") / _drain(r, "bullmq-node"), 1)


# --- the seed's own clients beside ours (contenders/: the mix, closed loop, on disk) -----------

CLIENTS = {"redis": ("redis", "bullmq-node", "bullmq-python"), "rabbitmq": ("rabbitmq", "amqplib-node", "pika-plain")}


def _client_mix(r: Results, broker: str, client: str) -> list[float]:
    """The closed-loop mix jobs/s of one client's runs in the contenders part (the drain and
    latency runs there are no-op jobs, not the mix)."""
    return [d["figures"]["throughput"]["out_per_s"]
            for d in _client_runs(r, broker, client, scenario__profile="mix", scenario__mode="closed")]


for _b, _clients in CLIENTS.items():
    for _c in _clients:
        quote(f"contenders.{_c}.mix_per_s", f"{_c} on {_b}: median mix jobs/s, closed loop (contenders/)")(
            lambda r, b=_b, c=_c: count(middle(_client_mix(r, b, c))))


@quote("contenders.seed_mix_ratio", "BullMQ (Node) median mix jobs/s over amqplib's (Node), closed loop (contenders/)")
def _seed_ratio(r: Results) -> str:
    return fixed(middle(_client_mix(r, "redis", "bullmq-node")) / middle(_client_mix(r, "rabbitmq", "amqplib-node")), 2)


# --- are RabbitMQ's acks durable? (experiments/acks-after-crash-*) ------------------------------


def _trials(r: Results, queue_type: str, at_once: bool) -> list[float]:
    """What came back after each restart; a trial that failed (its ``error``: the node refused
    after the restart) measured nothing and is left out (the report names it)."""
    d = r.one("experiments/acks-after-crash-*.json")
    return [t["back_after_restart"] for t in d["trials"]
            if t["queue_type"] == queue_type and (t["wait_s"] == 0) == at_once and "error" not in t]


@quote("acks.messages", "messages acked before each kill in the acks experiment")
def _acks_messages(r: Results) -> str:
    return count(r.value("experiments/acks-after-crash-*.json", "settings.messages"))


@quote("acks.classic.back_at_once", "classic queue killed right after the acks: acked messages delivered again (range)")
def _classic_at_once(r: Results) -> str:
    return span(_trials(r, "classic", True))


@quote("acks.classic.back_after_wait",
      "classic queue killed 0.2 s or more after the acks: acked messages delivered again (most)")
def _classic_later(r: Results) -> str:
    return count(max(_trials(r, "classic", False)))


@quote("acks.quorum.back", "quorum queue, any wait: acked messages delivered again (most)")
def _quorum_back(r: Results) -> str:
    return count(max(_trials(r, "quorum", True) + _trials(r, "quorum", False)))


@quote("replication.redis.wait.doubt_never_ran", "Redis with WAIT 1: jobs in doubt that never ran, all runs together")
def _wait_never(r: Results) -> str:
    return count(sum(d["figures"]["in_doubt_outcome"]["never_ran"]
                     for d in _cut_off(r, WAIT)))


@quote("replication.redis.wait.duplicated",
      "Redis with WAIT 1: jobs run twice per run, primary hung or cut off (range)")
def _wait_dup(r: Results) -> str:
    return span(d["figures"]["duplicated"] for d in _cut_off(r, WAIT))


# --- a memory alarm held longer than a confirm waits (scenarios/backpressure-held-alarm-*) ---------

HELD = "scenarios/backpressure-held-alarm-rabbitmq-*.json"


@quote("alarm.rabbitmq.alarm_s", "RabbitMQ: seconds the memory alarm was held")
def _alarm_s(r: Results) -> str:
    return count(r.value(HELD, "fault.alarm_s"))


@quote("alarm.rabbitmq.refused", "RabbitMQ, memory alarm held past the confirm timeout: jobs given back refused")
def _alarm_refused(r: Results) -> str:
    return count(r.value(HELD, "figures.rejected"))


@quote("alarm.rabbitmq.lost", "RabbitMQ, memory alarm held past the confirm timeout: accepted jobs lost")
def _alarm_lost(r: Results) -> str:
    return count(r.value(HELD, "figures.lost"))


@quote("replication.redis.async.duplicated_cut",
      "Redis async replication: jobs run twice per run, primary hung or cut off (range)")
def _async_dup(r: Results) -> str:
    return span(d["figures"]["duplicated"] for d in _cut_off(r, ASYNC))


for _b in BROKERS:
    quote(f"worker_crash.{_b}.duplicated", f"{_b}: jobs run twice per worker-kill run (range over its settings)")(
        lambda r, b=_b: span(r.values(f"scenarios/worker-crash-{b}-*.json", "figures.duplicated")))


# --- the reference itself (reference.json beside its results folder) -----------------------


def _manifest(r: Results) -> dict:
    path = r.folder.parent / "reference.json"
    if not path.exists():
        raise QuoteError(f"no {path.name} beside {r.folder}: not a folder `brokerbench reference` made")
    return json.loads(path.read_text())


def _done_parts(r: Results) -> list[dict]:
    return [p for p in _manifest(r)["parts"].values() if p.get("status") == "done"]


@quote("reference.length", "the committed reference's parts, from the first start to the last finish")
def _reference_length(r: Results) -> str:
    parts = _done_parts(r)
    if not parts:
        raise QuoteError("reference.json names no finished part")
    took = datetime.fromisoformat(max(p["finished"] for p in parts)) - datetime.fromisoformat(
        min(p["started"] for p in parts))
    minutes = round(took.total_seconds() / 60)
    return f"{minutes // 60} h {minutes % 60} min"


@quote("reference.parts", "how many parts the committed reference ran")
def _reference_parts(r: Results) -> str:
    return count(len(_done_parts(r)))


@quote("reference.date", "the day the committed reference started")
def _reference_date(r: Results) -> str:
    return min(p["started"] for p in _manifest(r)["parts"].values())[:10]


@quote("reference.files", "results files in the committed reference (summaries left out)")
def _reference_files(r: Results) -> str:
    return count(sum(1 for p in r.folder.rglob("*.json") if not p.name.startswith("summary")))
