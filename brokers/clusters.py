"""Replicated brokers of our own on one machine: a Redis primary with replicas watched by
Sentinels, and a 3-node RabbitMQ cluster. Loopback only, free ports, temporary folders, torn
down at exit (like the single private instances of :mod:`brokers.instances`).

What they take here (RSS, measured idle): each RabbitMQ node about 110-150 MB (three: about
0.4 GB); each redis-server (data node or Sentinel) 3-10 MB plus its data.

Failover settings are short so a scenario sees a whole failover in seconds: Sentinel marks the
primary down after ``down_after_ms`` (1 s) and promotes a replica (quorum 2 of 3 Sentinels);
RabbitMQ's quorum queues elect a new leader on their own (Raft), in a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .amqp.server import RabbitMQInstance
from .bullmq_redis.server import RedisInstance
from .instances import WEAKREFS, find_binary, port_open


class ClusterError(RuntimeError):
    """A node of a private cluster did not come up; the message names it and its log."""


def _until(check: Callable[[], bool], timeout: float, what: str, log: Path | str) -> float:
    """Wait until ``check()`` is true; seconds it took. ClusterError naming ``log`` if never."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.1)
    raise ClusterError(f"{what} within {timeout:.0f} s; read {log}")


def pause(pid: int) -> None:
    """SIGSTOP: the process holds its sockets but answers nothing (to its peers, a partition)."""
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


# --- Redis: primary, replicas, Sentinels ----------------------------------------------------


@dataclass
class SentinelInstance(RedisInstance):
    """One ``redis-server --sentinel`` watching ``service`` on ``primary_host``:``primary_port``."""

    service: str = "brokerbench"
    primary_host: str = "127.0.0.1"
    primary_port: int = 0
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000

    program = "redis-sentinel"

    def start(self, timeout: float = 20.0) -> "SentinelInstance":
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server / brew install redis)")
        conf = self.folder / "sentinel.conf"
        own = [f"bind-source-addr {self.host}", "protected-mode no"] if self.namespace is not None else []
        conf.write_text("\n".join([
            f"port {self.port}", f"bind {self.host}", *own, f"dir {self.folder}",
            f"logfile {self.folder / 'sentinel.log'}",
            f"sentinel monitor {self.service} {self.primary_host} {self.primary_port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.service} 1", ""]))
        args = [binary, str(conf), "--sentinel"]
        if self.namespace is not None:
            args = self.namespace.command(args)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.folder)
        self._wait_port(timeout, "redis-sentinel")
        return self


@dataclass
class RedisSentinelGroup:
    """A Redis primary, ``replicas`` replicas and ``sentinels`` Sentinels on loopback.

    ``url`` is ``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,.../<service>``: clients ask the
    Sentinels for the primary. ``config``: settings of every data node (e.g. AOF).

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

    def __post_init__(self) -> None:
        WEAKREFS.append(self)  # type: ignore[arg-type]  # cleaned up at exit like an instance

    @property
    def url(self) -> str:
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.watchers)
        return f"redis+sentinel://{hosts}/{self.service}"

    def _placed(self, index: int) -> dict[str, Any]:
        """Where process ``index`` runs: loopback, or its own address in the namespace."""
        if self.namespace is None:
            return {}
        return {"namespace": self.namespace, "host": self.namespace.address(index)}

    def start(self, timeout: float = 30.0) -> "RedisSentinelGroup":
        from .netns import Namespace, why_not

        if self.partitionable is None:
            self.partitionable = why_not() is None
        if self.partitionable:
            self.namespace = Namespace(1 + self.replicas + self.sentinels).create()
        # Redis 7 waits 5 s before a diskless full sync (to serve several replicas at once): not here.
        config = {"repl-diskless-sync-delay": "0", **self.config}
        primary = RedisInstance(config=dict(config), **self._placed(0)).start()
        self.nodes = [primary]
        for i in range(self.replicas):
            self.nodes.append(RedisInstance(config={**config, "replicaof": f"{primary.host} {primary.port}"},
                                            **self._placed(1 + i)).start())
        _until(lambda: self._replicas_online(primary), timeout,
               f"the {self.replicas} Redis replicas did not sync with the primary", primary.folder / "redis.log")
        for i in range(self.sentinels):
            self.watchers.append(SentinelInstance(service=self.service, primary_host=primary.host,
                                                  primary_port=primary.port, quorum=self.sentinels // 2 + 1,
                                                  down_after_ms=self.down_after_ms,
                                                  **self._placed(1 + self.replicas + i)).start())
        for watcher in self.watchers:
            _until(lambda w=watcher: self._sees_all(w), timeout,
                   f"Sentinel on port {watcher.port} did not see the replicas and the other Sentinels",
                   watcher.folder / "sentinel.log")
        return self

    def _replicas_online(self, node: RedisInstance) -> bool:
        import redis

        client = redis.Redis(host=node.host, port=node.port, socket_timeout=1)
        try:
            replication = client.info("replication")
            return (replication["role"] == "master" and int(replication["connected_slaves"]) == self.replicas
                    and all(replication[f"slave{i}"]["state"] == "online" for i in range(self.replicas)))
        finally:
            client.close()

    def _sees_all(self, watcher: SentinelInstance) -> bool:
        import redis

        client = redis.Redis(host=watcher.host, port=watcher.port, socket_timeout=1)
        try:
            state = client.sentinel_master(self.service)
            return (int(state["num-slaves"]) >= self.replicas
                    and int(state["num-other-sentinels"]) >= self.sentinels - 1)
        finally:
            client.close()

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinels see it now (None if none answers)."""
        import redis

        for watcher in self.watchers:
            if watcher.pid is None or not port_open(watcher.port, watcher.host):
                continue
            client = redis.Redis(host=watcher.host, port=watcher.port, socket_timeout=1)
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
        import redis

        def promoted() -> bool:
            port = self.primary_port()
            if port is None or port == old_port:
                return False
            node = next(n for n in self.nodes if n.port == port)
            client = redis.Redis(host=node.host, port=port, socket_timeout=1)
            try:
                return client.info("replication")["role"] == "master"
            finally:
                client.close()

        return _until(promoted, timeout, f"Sentinel promoted no replica after the primary on port {old_port} "
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
        return {"topology": f"Redis primary + {self.replicas} replicas, {self.sentinels} Sentinels",
                "down_after_ms": self.down_after_ms,
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
            if node.proc is not None and node.proc.poll() is None:
                resume(node.proc.pid)
        if self.namespace is not None:
            self.namespace.heal()
        primary = self.primary()
        for node in self.nodes:
            if node.pid is None:
                node.config = {**node.config, "replicaof": f"{primary.host} {primary.port}"}
                node.start()
        _until(self._settled, timeout, "the Redis group did not settle (one primary named by every Sentinel, "
               "no failover in progress, every replica online)", self.watchers[0].folder / "sentinel.log")

    def _settled(self) -> bool:
        """Every Sentinel names the same primary, none is failing over, its replicas are online
        (killing the primary again before that would find Sentinels still finishing the last
        failover, which they do not restart within their failover timeout)."""
        import redis

        named = set()
        for watcher in self.watchers:
            client = redis.Redis(host=watcher.host, port=watcher.port, socket_timeout=1)
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
            try:
                if instance.proc is not None and instance.proc.poll() is None:
                    resume(instance.proc.pid)  # a paused process cannot be stopped
            except ProcessLookupError:
                pass
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


# --- RabbitMQ: three nodes, one cluster -------------------------------------------------------


@dataclass
class RabbitMQCluster:
    """``size`` RabbitMQ nodes joined into one cluster (``rabbitmqctl join_cluster``), each with
    its own node name, ports and data folder; one Erlang cookie (the service user's).
    ``url`` names every node: ``amqp://guest:guest@127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/%2F``."""

    size: int = 3
    config: dict[str, str] = field(default_factory=dict)
    nodes: list[RabbitMQInstance] = field(default_factory=list)

    def __post_init__(self) -> None:
        WEAKREFS.append(self)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"amqp://guest:guest@{hosts}/%2F"

    def start(self, timeout: float = 120.0) -> "RabbitMQCluster":
        if find_binary("/usr/lib/rabbitmq/bin/rabbitmqctl", "rabbitmqctl", "/usr/sbin/rabbitmqctl") is None:
            raise RuntimeError("rabbitmqctl is not installed (apt install rabbitmq-server / brew install rabbitmq)")
        self.nodes = [RabbitMQInstance(config=dict(self.config)) for _ in range(self.size)]
        for node in self.nodes:  # all start at once: a node boots in about 5-10 s here
            node.start(timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            for step in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
                done = node.ctl(*step, timeout=timeout)
                if done.returncode != 0:
                    raise ClusterError(f"rabbitmqctl -n {node.node} {' '.join(step)} failed: "
                                       f"{(done.stderr or done.stdout).strip()[-400:]}; read {node.folder / 'log'}")
        _until(lambda: len(self.running_nodes()) == self.size, timeout,
               f"the {self.size} RabbitMQ nodes did not all run in one cluster", first.folder / "log")
        return self

    def running_nodes(self, via: RabbitMQInstance | None = None) -> list[str]:
        import json

        for node in [via] if via else self.nodes:
            if node.pid is None:
                continue
            done = node.ctl("cluster_status", "--formatter", "json", timeout=30)
            if done.returncode == 0:
                return list(json.loads(done.stdout).get("running_nodes", []))
        return []

    def live_node(self) -> RabbitMQInstance:
        for node in self.nodes:
            if node.pid is not None and port_open(node.port):
                return node
        raise ClusterError("no RabbitMQ node of the cluster is running")

    def by_name(self, name: str) -> RabbitMQInstance:
        for node in self.nodes:
            if node.node == name:
                return node
        raise ClusterError(f"{name} is not a node of this cluster")

    def queue_members(self, queue: str) -> tuple[str | None, list[str]]:
        """(leader, members) of a quorum queue, as a live node reports them."""
        import json

        done = self.live_node().ctl("list_queues", "name", "leader", "members", "--formatter", "json", timeout=30)
        if done.returncode != 0:
            raise ClusterError(f"list_queues failed: {done.stderr.strip()[-300:]}")
        for row in json.loads(done.stdout or "[]"):
            if row.get("name") == queue:
                members = row.get("members") or []
                return row.get("leader") or None, list(members if isinstance(members, list) else [members])
        raise ClusterError(f"queue {queue!r} not found")

    def leader_seen_by(self, node: RabbitMQInstance, queue: str) -> str | None:
        """The leader of quorum queue ``queue`` in ``node``'s own metadata (one local read: it
        answers while another node hangs, where list_queues would wait for it)."""
        import re

        escaped = queue.replace("\\", "\\\\").replace('"', '\\"')
        done = node.ctl("eval", f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"{escaped}">>)), '
                        "amqqueue:get_pid(Q).", timeout=5)
        found = re.search(r",\s*'?([^,}']+@[^}']+)'?\}\s*$", done.stdout.strip()) if done.returncode == 0 else None
        return found.group(1) if found else None

    def wait_for_leader(self, queue: str, not_on: str, timeout: float = 60.0) -> float:
        """Seconds until the other nodes record a leader of ``queue`` other than ``not_on``."""
        def moved() -> bool:
            for node in self.nodes:
                if node.node != not_on and node.pid is not None:
                    leader = self.leader_seen_by(node, queue)
                    return leader is not None and leader != not_on
            return False

        return _until(moved, timeout, f"quorum queue {queue} elected no leader besides {not_on}",
                      self.nodes[0].folder / "log")

    # The API scenarios use on every replicated broker ------------------------------------------

    @staticmethod
    def quorum_queue(queue: str) -> str:
        """The AMQP queue that holds a lane-less adapter queue's jobs (its default lane)."""
        from .amqp.topology import Topology
        from .contract import DEFAULT_LANE

        return Topology(queue, {}).lane_queue(DEFAULT_LANE)

    def leader(self, queue: str) -> RabbitMQInstance:
        leader, _ = self.queue_members(self.quorum_queue(queue))
        if leader is None:
            raise ClusterError(f"quorum queue {self.quorum_queue(queue)} has no leader")
        return self.by_name(leader)

    def follower(self, queue: str) -> RabbitMQInstance:
        leader, members = self.queue_members(self.quorum_queue(queue))
        return next(self.by_name(m) for m in members if m != leader and self.by_name(m).pid is not None)

    def name(self, node: RabbitMQInstance) -> str:
        return node.node

    def describe(self) -> dict[str, Any]:
        return {"topology": f"{self.size}-node RabbitMQ cluster", "nodes": [n.node for n in self.nodes]}

    def wait_for_failover(self, old: RabbitMQInstance, queue: str, timeout: float = 60.0) -> float:
        return self.wait_for_leader(self.quorum_queue(queue), old.node, timeout)

    def heal(self, timeout: float = 120.0) -> None:
        """Resume paused nodes, start killed ones (each rejoins: its data folder remembers the
        cluster), and wait until every node runs in the cluster again."""
        for node in self.nodes:
            if node.pid is not None:
                resume(node.pid)
            else:
                node.start(timeout)
        _until(lambda: len(self.running_nodes()) == self.size, timeout,
               "the RabbitMQ nodes did not all run in one cluster again", self.nodes[0].folder / "log")

    def cleanup(self) -> None:
        for node in self.nodes:
            pid = node.pid
            if pid is not None:
                try:
                    resume(pid)
                except ProcessLookupError:
                    pass
        for node in reversed(self.nodes):
            try:
                node.kill()  # a clean stop of each node in turn waits on its peers; nothing here is kept
            finally:
                node.cleanup()
        self.nodes = []

    def stop(self) -> None:
        self.cleanup()

