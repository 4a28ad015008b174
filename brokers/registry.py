"""Every broker kind brokerbench knows, one descriptor each: the one place that tells them apart.

A :class:`Driver` holds everything the rest of the code needs to know about a broker kind: its
adapter class, how to find a shared broker (environment variable, default URL, how to ask it
whether it answers), how to start a private one (the instance class, its durability profiles,
the Docker image), what fault scenarios need (how to inject a raw message, drop every client
connection, find the broker's process, bound its memory), how a scenario's fields map to worker
options (prefetch vs concurrency), the fast-recovery settings tests use, and how plots draw it.

Provisioning, the harness, the fault scenarios and the tests loop over the registry; none of
them tests a broker's name, and an unknown kind is an error, never a silent fallback. Code that
is about one product by nature (the drain benchmark's official clients, the seed's claims) looks
a driver up by what it is (:attr:`Driver.products`, :attr:`Driver.protocol`).

Adding a broker kind (as in OpenMessaging Benchmark: one driver module plus one descriptor):
write its adapter behind :mod:`brokers.contract` in a folder of its own, with a ``driver.py``
whose ``DRIVER`` is its descriptor, and list that module in :data:`BUILTIN` (or register it from
elsewhere: the entry point group ``brokerbench.drivers``, the ``BROKERBENCH_DRIVERS`` environment
variable naming modules with a ``DRIVER``, or :func:`register`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .contract import Broker, Capabilities
    from .instances import PrivateInstance

BUILTIN = ("brokers.bullmq_redis.driver", "brokers.amqp.driver", "brokers.memory")
ENV_DRIVERS = "BROKERBENCH_DRIVERS"
ENTRY_POINTS = "brokerbench.drivers"

# Wire protocols: code about a protocol's semantics (AMQP's per-message TTL, say) asks for it.
PROTOCOL_REDIS = "resp"  # the Redis serialization protocol
PROTOCOL_AMQP_091 = "amqp-0-9-1"
PROTOCOL_IN_PROCESS = "in-process"

# Durability levels, named by what "accepted" promises. Each kind names the profile that gives
# each level it can give (DurabilityProfile.level), so a comparison sets like against like; a
# kind with no profile at a level sits that level out, and says why (Driver.lacks). A level key
# may carry a variant after a colon ("disk:quorum"): another profile of one kind at the same
# promise, run as a row of its own. The default comparison runs "disk".


@dataclass(frozen=True)
class DurabilityLevel:
    """What "accepted" means at one level, the same on every broker that gives it.

    :param key: its name in the CLI, scenario files and results files ("disk").
    :param label: a few words for tables and plots ("on disk").
    :param promise: one sentence: what a producer that saw a job accepted may count on.
    :param replicated: only a replicated broker gives it (the replication scenario measures it;
        a single-node run refuses it).
    """

    key: str
    label: str
    promise: str
    replicated: bool = False


LEVELS: dict[str, DurabilityLevel] = {level.key: level for level in (
    DurabilityLevel("memory", "from memory",
                    "accepted means the broker holds the job in memory and nowhere else: a crash of the broker "
                    "loses what it held (Redis without persistence / RabbitMQ transient messages, confirmed)"),
    DurabilityLevel("second", "within ~1 s, Redis only",
                    "accepted means the job is in memory and in a write log that reaches the disk within about a "
                    "second: a crash of the broker's process loses none of them, an OS crash or a power cut up to "
                    "about a second of them (Redis AOF, appendfsync everysec, BullMQ's production advice; "
                    "RabbitMQ has no such setting, so this level has no RabbitMQ side)"),
    DurabilityLevel("disk", "on disk",
                    "accepted means the job was written to disk and fsynced before the reply: neither a crash of "
                    "the broker nor of the machine loses it, losing the disk does (Redis AOF, appendfsync always / "
                    "RabbitMQ persistent messages with publisher confirms, on a classic queue or a quorum queue "
                    "of one node)"),
    DurabilityLevel("majority", "on a majority",
                    "accepted means a node other than the one that took the job has it too, so losing that node "
                    "loses none of them (Redis: WAIT 1, one of 2 replicas has received it, every node with AOF "
                    "always / RabbitMQ: a quorum queue on 3 nodes, fsynced by a majority before the confirm)",
                    replicated=True),
)}
DURABILITY_LEVELS = {key: level.promise for key, level in LEVELS.items()}
DEFAULT_DURABILITY = "disk"
VARIANT = ":"  # "disk:quorum": the level, then one kind's other profile at the same promise

# Names of the first three levels (results files written before the rename keep them). Each is
# refused where a level is asked for, with what it meant.
OLD_LEVELS = {
    "in-memory": "Redis without persistence / RabbitMQ transient messages: now 'memory'",
    "durable": "Redis AOF everysec (replies before the fsync) beside RabbitMQ persistent + confirms (confirms "
               "after it): not one promise; Redis's side is now 'second' (Redis only), the pair on disk is 'disk'",
    "strict": "Redis AOF always beside a RabbitMQ quorum queue on one node: both are now 'disk' (the quorum "
              "queue: 'disk:quorum')",
}


class LevelUnavailable(ValueError):
    """A broker kind has no profile at the level asked for; the message says why."""


def split_level(key: str) -> tuple[str, str]:
    """``"disk:quorum"`` -> ``("disk", "quorum")``; ``"disk"`` -> ``("disk", "")``."""
    base, _, variant = key.partition(VARIANT)
    return base, variant


def level_keys() -> list[str]:
    """Every level key a run may ask for: the levels, then the variants registered kinds name."""
    variants = [p.level for d in drivers() for p in d.durability if split_level(p.level)[1]]
    return list(LEVELS) + list(dict.fromkeys(variants))


def check_level(key: str) -> DurabilityLevel:
    """The level ``key`` names (a variant's level for ``"disk:quorum"``). A ValueError naming the
    known keys for anything else; for an old name (:data:`OLD_LEVELS`), also what it meant."""
    if key in OLD_LEVELS:
        raise ValueError(f"durability {key!r} is an old level name: it meant {OLD_LEVELS[key]}. Levels are now "
                         "named by what 'accepted' promises: " + "; ".join(
                             f"{k} ({v.label})" for k, v in LEVELS.items()))
    base, _ = split_level(key)
    if base not in LEVELS or key not in level_keys():
        raise ValueError(f"unknown durability {key!r}; known: {', '.join(level_keys())}")
    return LEVELS[base]


def level_rank(key: str) -> tuple[int, str]:
    """Where level ``key`` sorts in tables and plots: weakest first, a variant beside its level
    (memory, second, disk, disk:quorum, majority), then old names (in-memory, durable, strict),
    then anything else."""
    base, variant = split_level(key)
    if base in LEVELS:
        return list(LEVELS).index(base), variant
    if key in OLD_LEVELS:
        return len(LEVELS) + list(OLD_LEVELS).index(key), ""
    return len(LEVELS) + len(OLD_LEVELS), key


def level_label(key: str) -> str:
    """How tables name level ``key``: its label ("on disk", "on disk (quorum)"); an old name
    from an older results file as "<name> (old level)"; anything else as it is, "" as "-"."""
    if not key:
        return "-"
    if key in OLD_LEVELS:
        return f"{key} (old level)"
    base, variant = split_level(key)
    if base not in LEVELS:
        return key
    return LEVELS[base].label + (f" ({variant})" if variant else "")


@dataclass(frozen=True)
class DurabilityProfile:
    """A named set of settings that decides what a broker keeps after it crashes.

    :param name: how tables name it ("AOF always", "persistent + confirms").
    :param promise: what it promises about jobs the producer saw accepted, in words.
    :param no_loss: True when it promises to lose none of them.
    :param server: settings of the broker process (a private instance's config).
    :param options: adapter options (publisher confirms, persistence, queue type).
    :param own_instance: runs need a broker instance of their own (server settings differ,
        or the run must start from an empty broker).
    :param level: the durability level it gives (a key of :data:`LEVELS`, or a variant such as
        ``"disk:quorum"``), "" when it gives none (nothing promised to the producer).
    """

    name: str
    promise: str
    no_loss: bool
    server: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    own_instance: bool = False
    level: str = ""


@dataclass(frozen=True)
class RecoverySetting:
    """Worker options for the worker-crash scenario, with a label for tables."""

    label: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryPolicy:
    """What a broker does when a memory bound is reached (the backpressure scenario).

    :param name: e.g. "maxmemory 24mb, noeviction".
    :param server: the private instance's settings that set the bound and the policy.
    :param expectation: what should happen, in words.
    :param refuses_producers: True when producers are told (refused) and nothing accepted is
        lost or run twice; False when the policy drops or evicts (a finding either way).
    :param worker_options: worker options of the runs (short locks make evictions visible).
    :param count_evicted: ``count_evicted(url)``: keys the broker evicted so far, if it says.
    """

    name: str
    server: Mapping[str, str]
    expectation: str
    refuses_producers: bool
    worker_options: Mapping[str, Any] = field(default_factory=dict)
    count_evicted: Callable[[str], int | None] | None = None


@dataclass(frozen=True)
class MemoryAlarm:
    """How a private broker is made to block publishers once its memory grows.

    :param server: settings of the private instance it needs.
    :param arm: ``arm(instance, headroom_mb)`` sets the alarm at the broker's idle memory +
        ``headroom_mb``; returns the idle memory in MB.
    :param hold: ``hold(instance)`` raises the alarm now, whatever the memory; returns a function
        that clears it (a long alarm in the middle of a run).
    """

    server: Mapping[str, str]
    arm: Callable[["PrivateInstance", float], float]
    hold: Callable[["PrivateInstance"], Callable[[], None]] | None = None


@dataclass(frozen=True)
class QueueBound:
    """Settings under which a queue soon refuses new jobs (a test of a full queue).

    :param server: a private instance's settings (empty: any broker of the kind will do).
    :param options: adapter options.
    """

    server: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Replication:
    """How a kind runs replicated on one machine, and what its replicated settings promise.

    :param cluster_path: ``"module:Class"`` of its private replicated broker (see
        :mod:`brokers.clusters`: ``start()``, ``url``, ``leader(queue)``, ``follower(queue)``,
        ``wait_for_failover(node, queue)``, ``heal()``, ``cleanup()``).
    :param leader: how tables name the node that takes the queue's writes ("primary").
    :param follower: how they name a node holding a copy ("replica").
    :param profiles: replicated settings, each a :class:`DurabilityProfile` whose promise is
        about losing the leader (``options``: adapter options on the replicated broker).
    :param single_node: one-node settings the cost-of-replication rows set beside them
        (``server``: a private single instance's settings); each should keep the per-node
        promise of the replicated nodes (:attr:`server`), so the rows price the copies alone.
    :param server: settings every node of the replicated broker runs (its ``config``), e.g.
        Redis's AOF, so that each node keeps what a one-node broker at the same level keeps.
    :param node_level: what each node keeps on its own (a key of :data:`LEVELS`): the
        :attr:`single_node` rows at that level are the baselines the copies' cost is read against.
    """

    cluster_path: str
    leader: str
    follower: str
    profiles: tuple[DurabilityProfile, ...]
    single_node: tuple[DurabilityProfile, ...] = ()
    server: Mapping[str, str] = field(default_factory=dict)
    node_level: str = ""

    def cluster_class(self) -> Any:
        return _load(self.cluster_path)

    def new_cluster(self) -> Any:
        """A replicated broker of this kind, not started, whose every node runs :attr:`server`."""
        return self.cluster_class()(config=dict(self.server))


def _no_worker_options(concurrency: int, prefetch: int | None) -> dict[str, Any]:
    return {}


def _no_pid(url: str) -> int | None:
    return None


def _unknown_memory(url: str) -> float | None:
    return None


def _no_objects() -> dict[str, int]:
    return {"exchanges": 0, "queues": 0, "bindings": 0}


@dataclass(frozen=True)
class Driver:
    """What the rest of brokerbench needs to know about one broker kind.

    :param kind: the kind's name in scenarios, results files and the CLI.
    :param label: how tables and plots name it.
    :param adapter_path: ``"module:Class"`` of its :class:`~brokers.contract.Broker`.
    :param protocol: its wire protocol (one of the ``PROTOCOL_*`` names).
    :param products: product names it stands for where a text names products (the seed's
        "BullMQ", "RabbitMQ"), so claims about a product find the driver that measures it.
    :param compared: part of the default comparison and of the fault scenarios.
    :param in_process: lives inside one process: a run's roles are threads sharing one adapter.
    :param env_var: environment variable holding the URL of a shared broker.
    :param default_url: where a shared broker is looked for on this host.
    :param install_hint: how to get one, for the error that says none was found.
    :param probe: ``probe(url, timeout)`` raises a :class:`~brokers.contract.BrokerError`
        saying why, if nothing usable answers at ``url``.
    :param server_path: ``"module:Class"`` of its private instances (a process we start), or "".
    :param docker_image: image testcontainers starts when nothing else worked, or "".
    :param start_container: ``start_container(image) -> (url, container)``.
    :param worker_options: ``worker_options(concurrency, prefetch)``: the adapter's worker
        options for a scenario's fields (AMQP turns prefetch into ``prefetch``).
    :param priority_options: adapter options that turn priorities on (AMQP: ``max_priority``).
    :param fast_recovery: worker options that make a dead worker's jobs come back fast (tests).
    :param password_config: ``password_config(password)``: a private instance's settings that
        make it require ``password``; None when every broker of the kind requires credentials.
    :param queue_bound: settings under which a queue soon refuses new jobs (tests).
    :param recovery_settings: worker settings the worker-crash scenario compares; the last is
        the one small runs use.
    :param durability: its durability profiles, weakest first (the first keeps nothing of its
        backlog through a crash), in the order tables list them.
    :param lacks: durability levels (keys of :data:`LEVELS`) it has no profile for by nature,
        each with why, in words (said when a run asks for it).
    :param restart_pause_s: how long a crashed instance stays down before its restart.
    :param memory_alarm: how a private instance is made to block publishers (None: it has no
        such alarm and accepts jobs until it is full).
    :param memory_policies: bounds of memory and what happens when they are reached.
    :param read_settings: ``read_settings(url, keys)``: the broker's current values of server
        settings ``keys`` (to tell whether a found broker already runs a durability profile);
        None when it cannot say (a private instance is then started for a profile that has
        server settings).
    :param profile_of: ``profile_of(described)``: the name of the durability profile (one of
        :attr:`durability`) a broker ran, read from what its adapter's ``describe()`` said of it
        (a results file's ``environment.brokers[kind]``); None when that does not tell. Plots
        name the durability of results files that have no durability section with it.
    :param server_pid: ``server_pid(url)``: the broker's pid when it runs on this host.
    :param memory_used_mb: ``memory_used_mb(url)``: the broker's own memory figure, if it has one.
    :param inject_raw: ``inject_raw(broker, name, raw)``: put a job whose payload is ``raw``
        bytes (maybe not JSON) past the producer into the default lane; returns its id.
    :param drop_connections: ``drop_connections(url, instance, pid=None, spare_pid=None)``:
        close, from the broker's side, every brokerbench client connection (of process ``pid``
        if given, never of ``spare_pid``); returns how many.
    :param declared_objects: objects a job queue must declare before its first job.
    :param replication: how it runs replicated (None: it does not, here).
    :param packages: its client libraries, whose versions results files record.
    :param colour: its colour in plots (one per broker everywhere).
    :param marker: its marker in plots.
    """

    kind: str
    label: str
    adapter_path: str
    protocol: str
    products: tuple[str, ...] = ()
    compared: bool = True
    in_process: bool = False
    env_var: str | None = None
    default_url: str = ""
    install_hint: str = ""
    probe: Callable[[str, float], None] | None = None
    server_path: str = ""
    docker_image: str = ""
    start_container: Callable[[str], tuple[str, Any]] | None = None
    worker_options: Callable[[int, int | None], dict[str, Any]] = _no_worker_options
    priority_options: Mapping[str, Any] = field(default_factory=dict)
    fast_recovery: Mapping[str, Any] = field(default_factory=dict)
    password_config: Callable[[str], Mapping[str, str]] | None = None
    queue_bound: QueueBound = field(default_factory=QueueBound)
    recovery_settings: tuple[RecoverySetting, ...] = ()
    durability: tuple[DurabilityProfile, ...] = ()
    lacks: Mapping[str, str] = field(default_factory=dict)
    restart_pause_s: float = 0.5
    memory_alarm: MemoryAlarm | None = None
    memory_policies: tuple[MemoryPolicy, ...] = ()
    read_settings: Callable[[str, tuple[str, ...]], dict[str, str]] | None = None
    profile_of: Callable[[Mapping[str, Any]], str | None] | None = None
    server_pid: Callable[[str], int | None] = _no_pid
    memory_used_mb: Callable[[str], float | None] = _unknown_memory
    inject_raw: Callable[["Broker", str, bytes], str] | None = None
    drop_connections: Callable[..., int] | None = None
    declared_objects: Callable[[], dict[str, int]] = _no_objects
    replication: Replication | None = None
    packages: tuple[str, ...] = ()
    colour: str = "#999999"
    marker: str = "o"

    def adapter(self) -> type["Broker"]:
        """The adapter class (imported on first use)."""
        return _load(self.adapter_path)

    def server_class(self) -> type["PrivateInstance"] | None:
        """The class of private instances, or None if this kind has none."""
        return _load(self.server_path) if self.server_path else None

    @property
    def capabilities(self) -> "Capabilities":
        return self.adapter().capabilities

    @property
    def can_crash(self) -> bool:
        """Its brokers and clients are processes of their own: they can be killed and restarted."""
        return not self.in_process and bool(self.server_path)

    def open(self, url: str, **options: Any) -> "Broker":
        """An adapter on ``url``. A ValueError naming any option the adapter does not take
        (:meth:`brokers.contract.Broker.option_names`), before anything connects."""
        adapter = self.adapter()
        known = adapter.option_names()
        unknown = sorted(set(options) - known) if known is not None else []
        if unknown:
            raise ValueError(f"{self.label} has no option {', '.join(unknown)}; it takes "
                             f"{', '.join(sorted(known))}")
        return adapter(url, **options)

    def profile(self, name: str) -> DurabilityProfile:
        for profile in self.durability:
            if profile.name == name:
                return profile
        raise ValueError(f"{self.label} has no durability profile {name!r}; it has "
                         f"{', '.join(p.name for p in self.durability) or 'none'}")

    def recorded_profile(self, described: Mapping[str, Any]) -> DurabilityProfile | None:
        """The durability profile a broker ran, from what its adapter described
        (:attr:`profile_of`), or None when that does not tell."""
        name = self.profile_of(described) if self.profile_of and described else None
        return next((p for p in self.durability if p.name == name), None) if name else None

    def at_level(self, level: str) -> DurabilityProfile:
        """Its profile for durability ``level`` (a key of :func:`level_keys`). A ValueError for an
        unknown or old level name; :class:`LevelUnavailable` when it has no profile there: a
        level only replicated brokers give (pointing at the replication scenario), one it lacks
        by nature (:attr:`lacks`, with why), or another kind's variant."""
        wanted = check_level(level)
        for profile in self.durability:
            if profile.level == level:
                return profile
        base, variant = split_level(level)
        if wanted.replicated:
            raise LevelUnavailable(
                f"durability {level!r} ({wanted.label}) needs a copy on another node: one {self.label} node "
                "cannot give it. The replication scenario runs it on replicated brokers: brokerbench scenario "
                "replication")
        if level in self.lacks:
            raise LevelUnavailable(f"{self.label} has no profile at durability {level!r}: {self.lacks[level]}")
        if variant:
            main = next((p.name for p in self.durability if p.level == base), None)
            raise LevelUnavailable(f"{self.label} has no {variant!r} variant of durability {base!r}"
                                   + (f"; its {base!r} profile is {main}" if main else ""))
        have = [p.level for p in self.durability if p.level]
        raise LevelUnavailable(f"{self.label} has no {level!r} durability profile; it has "
                               f"{', '.join(have) or 'none (nothing of it survives its process)'}")


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


_drivers: dict[str, Driver] = {}
_loaded = False
_loading = threading.RLock()


def _load_drivers() -> None:
    global _loaded
    with _loading:
        if _loaded:
            return
        _loaded = True
        modules = list(BUILTIN)
        modules += [m.strip() for m in os.environ.get(ENV_DRIVERS, "").split(",") if m.strip()]
        for module in modules:
            register(import_module(module).DRIVER)
        for entry in metadata.entry_points(group=ENTRY_POINTS):
            register(entry.load())


def register(driver: Driver) -> Driver:
    """Add a broker kind (replacing one of the same name). Returns it."""
    with _loading:
        _drivers[driver.kind] = driver
    return driver


def unregister(kind: str) -> None:
    """Forget a kind (a test that registered one of its own)."""
    _load_drivers()
    with _loading:
        _drivers.pop(kind, None)


def get(kind: str) -> Driver:
    """The driver of ``kind``; a ValueError that lists the known kinds if there is none."""
    _load_drivers()
    try:
        return _drivers[kind]
    except KeyError:
        raise ValueError(f"unknown broker {kind!r}; known: {', '.join(sorted(_drivers))}") from None


def drivers() -> list[Driver]:
    """Every registered driver, in registration order."""
    _load_drivers()
    return list(_drivers.values())


def kinds(*, compared: bool | None = None, in_process: bool | None = None) -> list[str]:
    """Names of the registered kinds, optionally only those compared / (not) in-process."""
    return [d.kind for d in drivers() if (compared is None or d.compared == compared)
            and (in_process is None or d.in_process == in_process)]


def compared_kinds() -> list[str]:
    """The kinds the default comparison and the fault scenarios run on."""
    return kinds(compared=True)


def by_product(product: str) -> Driver | None:
    """The compared driver that stands for ``product`` (as texts name it), if any."""
    for driver in drivers():
        if product in driver.products:
            return driver
    return None


def adapter_class(kind: str) -> type["Broker"]:
    """The adapter class of ``kind``."""
    return get(kind).adapter()
