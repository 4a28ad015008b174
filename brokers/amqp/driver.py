"""The RabbitMQ (AMQP 0-9-1) adapter's descriptor: everything brokerbench needs to know about it
beyond the contract (see :class:`brokers.registry.Driver`)."""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..registry import (
    PROTOCOL_AMQP_091,
    Driver,
    DurabilityProfile,
    MemoryAlarm,
    QueueBound,
    RecoverySetting,
    Replication,
)

if TYPE_CHECKING:
    from ..contract import Broker

KIND = "rabbitmq"
SERVICE_USER = "rabbitmq"  # the system user Debian's and Homebrew's packages run nodes as
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None, ""}


def probe(url: str, timeout: float) -> None:
    from .connection import connect

    connect(url, role="probe", connect_timeout=timeout).close()


def worker_options(concurrency: int, prefetch: int | None) -> dict[str, Any]:
    """A scenario's prefetch (default: its concurrency) is the AMQP worker's ``prefetch``."""
    return {"prefetch": prefetch or concurrency}


def server_pid(url: str) -> int | None:
    """The Erlang VM listening on the AMQP port, when it runs on this host (a cluster URL: its
    first node's)."""
    from urllib.parse import urlsplit

    import psutil

    from .connection import node_urls

    parts = urlsplit(node_urls(url)[0])
    if parts.hostname not in LOCAL_HOSTS:
        return None
    port = parts.port or 5672
    try:
        for proc in psutil.process_iter(["name"]):
            if "beam" not in (proc.info["name"] or ""):
                continue
            try:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                        return proc.pid
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
    except Exception:  # noqa: BLE001 - unknown is an honest answer
        return None
    return None


_RAW: dict[int, tuple[Any, Any]] = {}


def inject_raw(broker: "Broker", name: str, raw: bytes) -> str:
    """Publish ``raw`` as a job's body to the main exchange, as a client that skips our
    producer could (one confirming channel per adapter object: a connection each time would
    slow the injecting producer down more than the fault it injects)."""
    import pika

    from .connection import connect

    job_id = f"raw{uuid.uuid4().hex[:8]}"
    conn, ch = _RAW.get(id(broker), (None, None))
    if conn is None or not conn.is_open or not ch.is_open:
        conn = connect(broker.url, role="inject")  # type: ignore[attr-defined]
        ch = conn.channel()
        ch.confirm_delivery()
        _RAW[id(broker)] = (conn, ch)
    ch.basic_publish(broker.topology.exchange, name, raw,  # type: ignore[attr-defined]
                     pika.BasicProperties(message_id=job_id, type=name, delivery_mode=2,
                                          headers={"bb-attempts": 3}))
    return job_id


def rabbitmqctl(instance: Any, *args: str) -> str:
    """Run rabbitmqctl against a private node, or against the local default node."""
    if instance is not None:
        out = instance.ctl(*args)
    else:
        ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        if not os.path.exists(ctl):
            raise RuntimeError("closing AMQP connections from the server side needs rabbitmqctl")
        out = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def drop_connections(url: str, instance: Any = None, *, pid: int | None = None, spare_pid: int | None = None,
                     name_prefix: str = "brokerbench:", wait_s: float = 10.0) -> int:
    """Close (rabbitmqctl close_connection) every connection whose connection_name starts with
    ``name_prefix`` (of process ``pid`` if given, not of ``spare_pid``), on the private node
    ``instance`` or, without one, on the local default node; waits until RabbitMQ lists at
    least one."""
    pattern = re.compile(r'\{"connection_name","(' + re.escape(name_prefix) + r'[^"]*:(\d+))"\}')
    deadline = time.monotonic() + wait_s
    while True:
        listing = rabbitmqctl(instance, "list_connections", "pid", "client_properties", "-q", "--no-table-headers")
        pids = []
        for line in listing.splitlines():
            found = pattern.search(line)
            if not found:
                continue
            owner = found.group(2)
            if (pid is not None and owner != str(pid)) or (spare_pid is not None and owner == str(spare_pid)):
                continue
            pids.append(line.split("\t", 1)[0])
        if pids or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for conn_pid in pids:
        rabbitmqctl(instance, "close_connection", conn_pid, "brokerbench: dropped connection")
    return len(pids)


def arm_memory_alarm(instance: Any, headroom_mb: float) -> float:
    """Set the node's memory high watermark at its idle memory + ``headroom_mb``; returns the
    idle memory (resident, MB)."""
    import psutil

    idle = round(psutil.Process(instance.pid).memory_info().rss / 1e6, 1)
    instance.ctl("set_vm_memory_high_watermark", "absolute", f"{int(idle + headroom_mb)}MB")
    return idle


def hold_memory_alarm(instance: Any) -> Callable[[], None]:
    """Raise a memory alarm on the private node now (a watermark of 1 byte: every publishing
    connection is blocked); returns what clears it (the node's watermark as it was). One
    rabbitmqctl call each way (each boots an Erlang VM: about 0.4 s idle, seconds on a loaded
    machine), the old watermark read and the new one set in the same call."""
    before = instance.ctl("eval", "Before = vm_memory_monitor:get_vm_memory_high_watermark(), "
                                  "ok = vm_memory_monitor:set_vm_memory_high_watermark({absolute, 1}), "
                                  "Before.").stdout.strip()
    if not re.fullmatch(r"\{absolute,\s*\d+\}|[0-9.]+", before):
        before = "0.4"  # what RabbitMQ starts with, if the answer was not a watermark

    def clear() -> None:
        instance.ctl("eval", f"ok = vm_memory_monitor:set_vm_memory_high_watermark({before}).")

    return clear


def profile_of(described: Mapping[str, Any]) -> str | None:
    """The durability profile whose adapter options a RabbitMQ adapter ran (persistent messages,
    publisher confirms, queue type), from its description; None when none matches."""
    ran = {"persistent": described.get("producer_persistent"), "confirms": described.get("producer_confirms"),
           "queue_type": described.get("queue_type")}
    found = [p.name for p in DRIVER.durability if all(ran.get(k) == v for k, v in
                                                      {"queue_type": "classic", **p.options}.items())]
    return found[0] if len(found) == 1 else None


def declared_objects() -> dict[str, int]:
    """Exchanges, queues and bindings our topology declares before the first job (one routed
    lane, the 28 delay levels included)."""
    from .topology import Topology

    return Topology("jobs", {"heavy_workflow_execution": "heavy"}).declared_counts()


def start_container(image: str) -> tuple[str, Any]:
    """A RabbitMQ container reachable from this host only (127.0.0.1), with a random user and
    password (not guest/guest)."""
    from testcontainers.rabbitmq import RabbitMqContainer

    user, password = f"bb-{secrets.token_hex(4)}", secrets.token_hex(16)
    container = RabbitMqContainer(image, username=user, password=password)
    container.ports = {port: ("127.0.0.1", None) for port in container.ports or {"5672": None}}
    container.start()
    atexit.register(container.stop)
    return f"amqp://{user}:{password}@127.0.0.1:{container.get_exposed_port(5672)}/%2F", container


DRIVER = Driver(
    kind=KIND,
    label="RabbitMQ",
    adapter_path="brokers.amqp.broker:RabbitMQBroker",
    protocol=PROTOCOL_AMQP_091,
    products=("RabbitMQ",),
    env_var="AMQP_URL",
    default_url="amqp://guest:guest@127.0.0.1:5672/%2F",
    install_hint=("install RabbitMQ (apt install rabbitmq-server, brew install rabbitmq), or run "
                  "`docker compose up -d` in the project folder, or set "
                  "AMQP_URL=amqp://user:password@host:5672/%2F"),
    probe=probe,
    server_path="brokers.amqp.server:RabbitMQInstance",
    docker_image="rabbitmq:3.13-management",
    start_container=start_container,
    worker_options=worker_options,
    priority_options={"max_priority": 10},
    queue_bound=QueueBound(options={"max_length": 100}),
    recovery_settings=(RecoverySetting("prefetch 8, manual acks", {}),),
    durability=(
        DurabilityProfile("transient messages", "confirmed from memory: lost on restart", False,
                          options={"persistent": False, "confirms": "windowed"}, level="memory"),
        DurabilityProfile("persistent, no confirms", "the producer is never told: what was in flight is lost",
                          False, options={"persistent": True, "confirms": "off"}),
        DurabilityProfile("persistent + confirms", "confirmed once on disk: loses nothing confirmed", True,
                          options={"persistent": True, "confirms": "windowed"}, level="disk"),
        DurabilityProfile("quorum + confirms", "confirmed once in the Raft log on disk (one node): loses nothing "
                          "confirmed", True,
                          options={"persistent": True, "confirms": "windowed", "queue_type": "quorum"},
                          level="disk:quorum"),
    ),
    lacks={"second": "nothing in RabbitMQ confirms a job before it is on disk yet writes it there within about a "
                     "second: a persistent message is confirmed only after its fsync (that is 'disk'), a transient "
                     "one is never written (that is 'memory'). A run at 'second' is Redis alone: no RabbitMQ row is "
                     "paired with it"},
    restart_pause_s=1.0,
    memory_alarm=MemoryAlarm(server={"vm_memory_high_watermark_paging_ratio": "0.99"}, arm=arm_memory_alarm,
                             hold=hold_memory_alarm),
    replication=Replication(
        cluster_path="brokers.amqp.cluster:RabbitMQCluster",
        leader="quorum leader",
        follower="quorum follower",
        profiles=(
            DurabilityProfile("quorum queue + confirms (3 replicas)",
                              "a message is confirmed once a majority of the queue's 3 replicas has it on disk: "
                              "losing a minority of nodes loses none (RabbitMQ docs: Quorum Queues)", True,
                              options={"persistent": True, "confirms": "windowed", "queue_type": "quorum"},
                              level="majority"),
        ),
        # One node at the same per-node promise (confirmed once on disk), in both queue types.
        single_node=(
            DurabilityProfile("one node, classic + confirms", "confirmed once on disk, one copy", False,
                              options={"persistent": True, "confirms": "windowed", "queue_type": "classic"},
                              level="disk"),
            DurabilityProfile("one node, quorum + confirms", "confirmed once on disk, one copy (a quorum queue of "
                              "one member)", False,
                              options={"persistent": True, "confirms": "windowed", "queue_type": "quorum"},
                              level="disk:quorum"),
        ),
        node_level="disk",  # each node fsyncs its log before it confirms
    ),
    server_pid=server_pid,
    inject_raw=inject_raw,
    drop_connections=drop_connections,
    declared_objects=declared_objects,
    profile_of=profile_of,
    packages=("pika",),
    colour="#0072B2",
    marker="s",
)
