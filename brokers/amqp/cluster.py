"""Three RabbitMQ nodes of our own joined into one cluster (see :mod:`brokers.clusters` for what
every replicated broker offers).

Nothing in it is open to other users of the machine (in a namespace, its /24 is routed from the
host): its nodes share one user with a random name and password (no guest; see
:mod:`brokers.amqp.server`), carried by :attr:`RabbitMQCluster.url` only; they run as the
service user."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..clusters import ClusterError, resume, resume_quietly, until
from ..instances import WEAKREFS, find_binary, port_open
from ..urls import new_secret, userinfo
from .server import RabbitMQInstance, new_user


@dataclass
class RabbitMQCluster:
    """``size`` RabbitMQ nodes joined into one cluster (``rabbitmqctl join_cluster``), each with
    its own node name, ports and data folder; one Erlang cookie (the service user's); one user
    (``username`` / ``password``, random unless given). ``url`` names every node:
    ``amqp://<username>:<password>@127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/%2F``.

    ``partitionable``: the nodes run in a network namespace of our own (see :mod:`brokers.netns`,
    root only), each on an address of its own, so :meth:`partition` can cut one off from the
    others while clients on the host still reach it. None (the default): when this machine
    allows it."""

    size: int = 3
    config: dict[str, str] = field(default_factory=dict)
    partitionable: bool | None = None
    nodes: list[RabbitMQInstance] = field(default_factory=list)
    namespace: Any = None
    username: str = field(default_factory=new_user)
    password: str = field(default_factory=new_secret, repr=False)

    def __post_init__(self) -> None:
        WEAKREFS.append(self)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{n.host}:{n.port}" for n in self.nodes)
        return f"amqp://{userinfo(self.username, self.password)}{hosts}/%2F"

    def start(self, timeout: float = 120.0) -> "RabbitMQCluster":
        if find_binary("/usr/lib/rabbitmq/bin/rabbitmqctl", "rabbitmqctl", "/usr/sbin/rabbitmqctl") is None:
            raise RuntimeError("rabbitmqctl is not installed (apt install rabbitmq-server / brew install rabbitmq)")
        from ..netns import Namespace, why_not

        if self.partitionable is None:
            self.partitionable = why_not() is None and shutil.which("nsenter") is not None
        if self.partitionable:
            self.namespace = Namespace(self.size).create()
        # Every node is given the cluster's user: the first creates it on its first boot, and the
        # others' own copies are replaced by the first's when they join (join_cluster resets them).
        self.nodes = [RabbitMQInstance(config=dict(self.config), username=self.username, password=self.password,
                                       **self._placed(i)) for i in range(self.size)]
        # The first node boots alone (in a namespace it starts the epmd its peers register
        # with), then the others at once (5-10 s each here, 40-60 s on a busy machine).
        self.nodes[0].start(timeout)
        with ThreadPoolExecutor(len(self.nodes) - 1 or 1) as pool:
            list(pool.map(lambda node: node.start(timeout), self.nodes[1:]))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            for step in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
                done = node.ctl(*step, timeout=timeout)
                if done.returncode != 0:
                    raise ClusterError(f"rabbitmqctl -n {node.node} {' '.join(step)} failed: "
                                       f"{(done.stderr or done.stdout).strip()[-400:]}; read {node.folder / 'log'}")
        until(lambda: len(self.running_nodes()) == self.size, timeout,
              f"the {self.size} RabbitMQ nodes did not all run in one cluster", first.folder / "log")
        return self

    def _placed(self, index: int) -> dict[str, Any]:
        """Where node ``index`` runs: loopback, or its own address in the namespace."""
        if self.namespace is None:
            return {}
        return {"namespace": self.namespace, "host": self.namespace.address(index)}

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
            if node.pid is not None and port_open(node.port, node.host):
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
        """The leader of quorum queue ``queue`` as ``node``'s own Raft member knows it (Ra's
        leaderboard, one local read). It answers at once while another node hangs or is cut
        off; the queue record (which ``list_queues`` reads) is rewritten by a cluster-wide
        transaction, which waits for the silent node (seen here: unchanged through a 20 s cut)."""
        import re

        escaped = queue.replace("\\", "\\\\").replace('"', '\\"')
        done = node.ctl("eval", f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"{escaped}">>)), '
                        "{Name, _} = amqqueue:get_pid(Q), ra_leaderboard:lookup_leader(Name).", timeout=5)
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

        return until(moved, timeout, f"quorum queue {queue} elected no leader besides {not_on}",
                     self.nodes[0].folder / "log")

    # The API scenarios use on every replicated broker ------------------------------------------

    @staticmethod
    def quorum_queue(queue: str) -> str:
        """The AMQP queue that holds a lane-less adapter queue's jobs (its default lane)."""
        from ..contract import DEFAULT_LANE
        from .topology import Topology

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
        """What results files say of it (no URL, no credentials)."""
        return {"topology": f"{self.size}-node RabbitMQ cluster", "nodes": [n.node for n in self.nodes],
                "network": "own network namespace, an address per node" if self.namespace else "loopback"}

    def can_partition(self) -> str | None:
        """None if :meth:`partition` works on this cluster, else why not."""
        return None if self.namespace is not None else "started on loopback (a partition needs root, ip netns, nsenter)"

    def partition(self, node: RabbitMQInstance) -> None:
        """Cut ``node`` off from the other nodes (both ways); clients on the host still reach it.
        Undone by :meth:`unpartition` or :meth:`heal`."""
        if self.namespace is None:
            raise ClusterError("this RabbitMQ cluster was not started partitionable")
        self.namespace.cut(node.host, [n.host for n in self.nodes if n is not node])

    def unpartition(self) -> None:
        if self.namespace is not None:
            self.namespace.heal()

    def wait_for_failover(self, old: RabbitMQInstance, queue: str, timeout: float = 60.0) -> float:
        return self.wait_for_leader(self.quorum_queue(queue), old.node, timeout)

    def heal(self, timeout: float = 120.0) -> None:
        """Resume paused nodes, start killed ones (each rejoins: its data folder remembers the
        cluster), remove any cut, and wait until every node runs in the cluster again."""
        self.unpartition()
        for node in self.nodes:
            if node.pid is not None:
                resume(node)
            else:
                node.start(timeout)
        until(lambda: len(self.running_nodes()) == self.size, timeout,
              "the RabbitMQ nodes did not all run in one cluster again", self.nodes[0].folder / "log")

    def cleanup(self) -> None:
        for node in self.nodes:
            if node.pid is not None:
                resume_quietly(node)
        for node in reversed(self.nodes):
            try:
                node.kill()  # a clean stop of each node in turn waits on its peers; nothing here is kept
            finally:
                node.cleanup()
        self.nodes = []
        if self.namespace is not None:
            self.namespace.remove()
            self.namespace = None

    def stop(self) -> None:
        self.cleanup()
