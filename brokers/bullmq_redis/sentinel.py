"""A Redis primary with replicas watched by Sentinels, our own, on loopback or in a network
namespace of our own (see :mod:`brokers.clusters` for what every replicated broker offers).

Nothing in it is open to other users of the machine (the namespace's /24 is routed from the
host): the data nodes require one random password (``requirepass``, and ``masterauth`` so
replicas sync and a demoted primary follows the new one), the Sentinels another
(``requirepass`` and ``sentinel sentinel-pass`` among themselves) and use the first to watch
the data nodes (``sentinel auth-pass``); protected mode stays on; as root every process runs
as the ``redis`` user (see :mod:`brokers.bullmq_redis.server`). The group's
:attr:`~RedisSentinelGroup.url` carries both passwords:
``redis+sentinel://:<data password>@host:port,.../<service>?sentinel_password=<sentinels'>``
(what :func:`brokers.bullmq_redis.connection.parse_sentinel_url` reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from ..clusters import ClusterError, resume, resume_quietly, until
from ..instances import WEAKREFS, port_open
from ..urls import new_secret, userinfo
from .server import RedisInstance


@dataclass
class SentinelInstance(RedisInstance):
    """One ``redis-server --sentinel`` watching ``service`` on ``primary_host``:``primary_port``.
    ``password`` is its own (and its peers'); ``auth_pass`` the data nodes'."""

    service: str = "brokerbench"
    primary_host: str = "127.0.0.1"
    primary_port: int = 0
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    auth_pass: str | None = field(default=None, repr=False)

    program = "redis-sentinel"

    def start(self, timeout: float = 20.0) -> "SentinelInstance":
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server / brew install redis)")
        own = [f"bind-source-addr {self.host}"] if self.namespace is not None else []
        if self.password:
            own += [f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}"]
        watch = [f"sentinel auth-pass {self.service} {self.auth_pass}"] if self.auth_pass else []
        # Sentinel rewrites this file as it learns (it must own it: see RedisInstance._launch)
        conf = self._write_conf("sentinel.conf", [
            f"port {self.port}", f"bind {self.host}", "protected-mode yes", *own, f"dir {self.folder}",
            f"logfile {self.folder / 'sentinel.log'}",
            f"sentinel monitor {self.service} {self.primary_host} {self.primary_port} {self.quorum}", *watch,
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.service} 1"])
        self._launch([binary, str(conf), "--sentinel"], timeout)
        return self


@dataclass
class RedisSentinelGroup:
    """A Redis primary, ``replicas`` replicas and ``sentinels`` Sentinels on loopback.

    ``url`` is ``redis+sentinel://:<password>@127.0.0.1:s1,127.0.0.1:s2,.../<service>?
    sentinel_password=<sentinel_password>``: clients ask the Sentinels for the primary.
    ``config``: settings of every data node (e.g. AOF). ``password`` (the data nodes') and
    ``sentinel_password`` are random unless given.

    ``partitionable``: every process runs in a network namespace of our own (see
    :mod:`brokers.netns`, root only) on an address of its own, so :meth:`partition` can cut one
    node off from the others while clients on the host still reach it. None (the default):
    when this machine allows it."""

    replicas: int = 2
    sentinels: int = 3
    service: str = "brokerbench"
    config: dict[str, str] = field(default_factory=dict)
    down_after_ms: int = 1000
    partitionable: bool | None = None
    nodes: list[RedisInstance] = field(default_factory=list)
    watchers: list[SentinelInstance] = field(default_factory=list)
    namespace: Any = None
    password: str = field(default_factory=new_secret, repr=False)
    sentinel_password: str = field(default_factory=new_secret, repr=False)

    def __post_init__(self) -> None:
        WEAKREFS.append(self)  # type: ignore[arg-type]  # cleaned up at exit like an instance

    @property
    def url(self) -> str:
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.watchers)
        return (f"redis+sentinel://{userinfo(None, self.password)}{hosts}/{self.service}"
                f"?sentinel_password={self.sentinel_password}")

    @staticmethod
    def _client(process: RedisInstance) -> redis.Redis:
        """A client of one process of the group (a data node or a Sentinel), with its password."""
        return redis.Redis(host=process.host, port=process.port, password=process.password, socket_timeout=1)

    def _placed(self, index: int) -> dict[str, Any]:
        """Where process ``index`` runs: loopback, or its own address in the namespace."""
        if self.namespace is None:
            return {}
        return {"namespace": self.namespace, "host": self.namespace.address(index)}

    def start(self, timeout: float = 30.0) -> "RedisSentinelGroup":
        from ..netns import Namespace, why_not

        if self.partitionable is None:
            self.partitionable = why_not() is None
        if self.partitionable:
            self.namespace = Namespace(1 + self.replicas + self.sentinels).create()
        # Redis 7 waits 5 s before a diskless full sync (to serve several replicas at once): not here.
        config = {"repl-diskless-sync-delay": "0", **self.config}
        primary = RedisInstance(config=dict(config), password=self.password, **self._placed(0)).start()
        self.nodes = [primary]
        for i in range(self.replicas):
            self.nodes.append(RedisInstance(config={**config, "replicaof": f"{primary.host} {primary.port}"},
                                            password=self.password, **self._placed(1 + i)).start())
        until(lambda: self._replicas_online(primary), timeout,
              f"the {self.replicas} Redis replicas did not sync with the primary", primary.folder / "redis.log")
        for i in range(self.sentinels):
            self.watchers.append(SentinelInstance(service=self.service, primary_host=primary.host,
                                                  primary_port=primary.port, quorum=self.sentinels // 2 + 1,
                                                  down_after_ms=self.down_after_ms,
                                                  password=self.sentinel_password, auth_pass=self.password,
                                                  **self._placed(1 + self.replicas + i)).start())
        for watcher in self.watchers:
            until(lambda w=watcher: self._sees_all(w), timeout,
                  f"Sentinel on port {watcher.port} did not see the replicas and the other Sentinels",
                  watcher.folder / "sentinel.log")
        return self

    def _replicas_online(self, node: RedisInstance) -> bool:
        client = self._client(node)
        try:
            replication = client.info("replication")
            return (replication["role"] == "master" and int(replication["connected_slaves"]) == self.replicas
                    and all(replication[f"slave{i}"]["state"] == "online" for i in range(self.replicas)))
        finally:
            client.close()

    def _sees_all(self, watcher: SentinelInstance) -> bool:
        client = self._client(watcher)
        try:
            state = client.sentinel_master(self.service)
            return (int(state["num-slaves"]) >= self.replicas
                    and int(state["num-other-sentinels"]) >= self.sentinels - 1)
        finally:
            client.close()

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinels see it now (None if none answers)."""
        for watcher in self.watchers:
            if watcher.pid is None or not port_open(watcher.port, watcher.host):
                continue
            client = self._client(watcher)
            try:
                found = client.sentinel_get_master_addr_by_name(self.service)
                if found:
                    return int(found[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def primary(self) -> RedisInstance:
        port = self.primary_port()
        for node in self.nodes:
            if node.port == port:
                return node
        raise ClusterError(f"no data node on the port the Sentinels name as primary ({port})")

    def wait_for_new_primary(self, old_port: int, timeout: float = 60.0) -> float:
        """Seconds until the Sentinels name another primary and it accepts writes."""
        def promoted() -> bool:
            port = self.primary_port()
            if port is None or port == old_port:
                return False
            client = self._client(next(n for n in self.nodes if n.port == port))
            try:
                return client.info("replication")["role"] == "master"
            finally:
                client.close()

        return until(promoted, timeout, f"Sentinel promoted no replica after the primary on port {old_port} "
                     "went down", self.watchers[0].folder / "sentinel.log")

    # The API scenarios use on every replicated broker ------------------------------------------

    def leader(self, queue: str) -> RedisInstance:
        """The node that takes the queue's writes: the primary."""
        return self.primary()

    def follower(self, queue: str) -> RedisInstance:
        """A node holding a copy: a replica."""
        primary = self.primary()
        return next(n for n in self.nodes if n is not primary and n.pid is not None)

    def name(self, node: RedisInstance) -> str:
        return f"redis:{node.port}"

    def describe(self) -> dict[str, Any]:
        """What results files say of it (no URL, no password)."""
        return {"topology": f"Redis primary + {self.replicas} replicas, {self.sentinels} Sentinels",
                "down_after_ms": self.down_after_ms, "node_config": dict(self.config),
                "network": "own network namespace, an address per process" if self.namespace else "loopback"}

    def can_partition(self) -> str | None:
        """None if :meth:`partition` works on this group, else why not."""
        return None if self.namespace is not None else "started on loopback (a partition needs root and ip netns)"

    def wait_for_failover(self, old: RedisInstance, queue: str, timeout: float = 60.0) -> float:
        return self.wait_for_new_primary(old.port, timeout)

    def heal(self, timeout: float = 60.0) -> None:
        """Resume paused nodes, start killed ones as replicas of the current primary (a Redis
        without persistence restarted as a primary would come up empty), and wait until the
        primary has all its replicas again."""
        for node in self.nodes:
            if node.pid is not None:
                resume(node)
        if self.namespace is not None:
            self.namespace.heal()
        primary = self.primary()
        for node in self.nodes:
            if node.pid is None:
                node.config = {**node.config, "replicaof": f"{primary.host} {primary.port}"}
                node.start()
        until(self._settled, timeout, "the Redis group did not settle (one primary named by every Sentinel, "
              "no failover in progress, every replica online)", self.watchers[0].folder / "sentinel.log")

    def _settled(self) -> bool:
        """Every Sentinel names the same primary, none is failing over, its replicas are online
        (killing the primary again before that would find Sentinels still finishing the last
        failover, which they do not restart within their failover timeout)."""
        named = set()
        for watcher in self.watchers:
            client = self._client(watcher)
            try:
                state = client.sentinel_master(self.service)
            finally:
                client.close()
            if state["flags"] != "master" or int(state["num-slaves"]) < self.replicas:
                return False
            named.add(int(state["port"]))
        if len(named) != 1:
            return False
        port = named.pop()
        return self._replicas_online(next(n for n in self.nodes if n.port == port))

    def cleanup(self) -> None:
        for instance in [*self.watchers, *self.nodes]:
            if instance.pid is not None:
                resume_quietly(instance)  # a paused process cannot be stopped
            instance.cleanup()
        self.watchers, self.nodes = [], []
        if self.namespace is not None:
            self.namespace.remove()
            self.namespace = None

    def partition(self, node: RedisInstance) -> None:
        """Cut ``node`` off from every other node and Sentinel (both ways); clients on the host
        still reach it. Undone by :meth:`unpartition` or :meth:`heal`."""
        if self.namespace is None:
            raise ClusterError("this Redis group was not started partitionable")
        self.namespace.cut(node.host, [p.host for p in [*self.nodes, *self.watchers] if p is not node])

    def unpartition(self) -> None:
        if self.namespace is not None:
            self.namespace.heal()

    def stop(self) -> None:
        self.cleanup()
