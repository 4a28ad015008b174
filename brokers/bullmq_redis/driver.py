"""The BullMQ-style Redis adapter's descriptor: everything brokerbench needs to know about it
beyond the contract (see :class:`brokers.registry.Driver`)."""

from __future__ import annotations

import atexit
import secrets
import time
import uuid
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from ..registry import (
    PROTOCOL_REDIS,
    Driver,
    DurabilityProfile,
    MemoryPolicy,
    QueueBound,
    RecoverySetting,
    Replication,
)

if TYPE_CHECKING:
    from ..contract import Broker

KIND = "redis"
# AOF with an fsync before each reply: what "on disk" takes (one node, and every replicated node)
AOF_ALWAYS = MappingProxyType({"appendonly": "yes", "appendfsync": "always"})
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None, ""}


def probe(url: str, timeout: float) -> None:
    from .connection import check

    check(url, timeout)


def server_pid(url: str) -> int | None:
    """Redis tells its own pid (INFO server); only trusted when it runs on this host."""
    from urllib.parse import urlsplit

    import psutil

    from .connection import client_for

    if urlsplit(url).hostname not in LOCAL_HOSTS:
        return None
    try:
        client = client_for(url, socket_connect_timeout=2)
        try:
            pid = int(client.info("server").get("process_id", 0))
        finally:
            client.close()
        return pid if pid and "redis" in psutil.Process(pid).name() else None
    except Exception:  # noqa: BLE001 - unknown is an honest answer
        return None


def memory_used_mb(url: str) -> float | None:
    """Redis's own figure for the memory its data takes (INFO memory: used_memory)."""
    from .connection import client_for

    client = client_for(url, socket_timeout=2)
    try:
        return client.info("memory")["used_memory"] / 1e6
    finally:
        client.close()


def evicted_keys(url: str) -> int | None:
    """Keys Redis evicted so far (INFO stats: evicted_keys)."""
    import redis

    from .connection import client_for

    client = client_for(url, socket_timeout=2)
    try:
        return int(client.info("stats").get("evicted_keys", 0))
    except redis.RedisError:
        return None
    finally:
        client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_settings(url: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The server's current values of ``keys`` (CONFIG GET); keys it will not tell are left out
    (a managed Redis may refuse CONFIG)."""
    import redis

    from .connection import client_for

    client = client_for(url, socket_timeout=2)
    found: dict[str, str] = {}
    try:
        for key in keys:
            try:
                found.update({_text(k): _text(v) for k, v in client.config_get(key).items()})
            except redis.RedisError:
                pass
    finally:
        client.close()
    return found


def profile_of(described: Mapping[str, Any]) -> str | None:
    """The durability profile whose server settings a Redis ran, from its description (AOF on
    or off, CONFIG's appendfsync and save); None when CONFIG was unavailable or none matches."""
    config = described.get("config")
    if "aof_enabled" not in described or not isinstance(config, Mapping):
        return None
    settings = {**{k: _text(v) for k, v in config.items()}, "appendonly": "yes" if described["aof_enabled"] else "no"}
    found = [p.name for p in DRIVER.durability if all(settings.get(k) == v for k, v in p.server.items())]
    return found[0] if len(found) == 1 else None


def inject_raw(broker: "Broker", name: str, raw: bytes) -> str:
    """Write a job hash whose data is ``raw`` and push its id to the default lane's wait list,
    as a client that skips our producer could."""
    from ..contract import DEFAULT_LANE

    job_id = f"raw{uuid.uuid4().hex[:8]}"
    keys = broker.lane_keys[DEFAULT_LANE]  # type: ignore[attr-defined]
    pipe = broker.client.pipeline()  # type: ignore[attr-defined]
    pipe.hset(keys.job(job_id), mapping={"name": name, "data": raw, "opts": '{"attempts":3}',
                                         "timestamp": int(time.time() * 1000), "delay": 0, "priority": 0})
    pipe.lpush(keys.wait, job_id)
    pipe.zadd(keys.marker, {"0": 0})
    pipe.execute()
    return job_id


def drop_connections(url: str, instance: Any = None, *, pid: int | None = None, spare_pid: int | None = None,
                     name_prefix: str = "brokerbench:") -> int:
    """CLIENT KILL every connection named ``name_prefix...`` (of process ``pid`` if given, and
    not of ``spare_pid``). Returns how many were killed."""
    from .connection import client_for

    admin = client_for(url)
    killed = 0
    try:
        for client in admin.client_list():
            name = client.get("name", "")
            if not name.startswith(name_prefix):
                continue
            owner = name.rsplit(":", 1)[-1]
            if (pid is not None and owner != str(pid)) or (spare_pid is not None and owner == str(spare_pid)):
                continue
            killed += admin.client_kill_filter(_id=client["id"])
    finally:
        admin.close()
    return killed


def start_container(image: str) -> tuple[str, Any]:
    """A Redis container reachable from this host only (127.0.0.1), with a random password."""
    from testcontainers.redis import RedisContainer

    password = secrets.token_hex(16)
    container = RedisContainer(image, password=password)
    container.ports = {port: ("127.0.0.1", None) for port in container.ports or {"6379": None}}
    container.start()
    atexit.register(container.stop)
    return f"redis://:{password}@127.0.0.1:{container.get_exposed_port(6379)}/0", container


DRIVER = Driver(
    kind=KIND,
    label="BullMQ-style Redis",
    adapter_path="brokers.bullmq_redis.broker:BullMQRedisBroker",
    protocol=PROTOCOL_REDIS,
    products=("BullMQ", "Bull", "Redis"),
    env_var="REDIS_URL",
    default_url="redis://127.0.0.1:6379/0",
    install_hint=("install Redis 7 (apt install redis-server, brew install redis), or run "
                  "`docker compose up -d` in the project folder, or set REDIS_URL=redis://host:port/0"),
    probe=probe,
    server_path="brokers.bullmq_redis.server:RedisInstance",
    docker_image="redis:7-alpine",
    start_container=start_container,
    fast_recovery={"lock_duration_ms": 1000, "stalled_interval_ms": 500},
    password_config=lambda password: {"requirepass": password},
    queue_bound=QueueBound(server={"maxmemory": "3mb", "maxmemory-policy": "noeviction"}),
    recovery_settings=tuple(
        RecoverySetting(f"lock {lock} ms, stalled check {interval} ms" + (" (BullMQ's defaults)" if default else ""),
                        {"lock_duration_ms": lock, "stalled_interval_ms": interval})
        for lock, interval, default in ((30000, 30000, True), (5000, 5000, False), (2000, 1000, False),
                                        (1000, 500, False))),
    durability=(
        DurabilityProfile("no persistence", "everything in memory is gone: loses the backlog", False,
                          server={"appendonly": "no", "save": ""}, own_instance=True, level="memory"),
        DurabilityProfile("AOF everysec", "replies before the fsync, which comes once a second: a process crash "
                          "loses nothing, an OS crash or power cut up to about a second of jobs", False,
                          server={"appendonly": "yes", "appendfsync": "everysec"}, own_instance=True,
                          level="second"),
        DurabilityProfile("AOF always", "fsync before each reply: loses nothing acknowledged", True,
                          server=AOF_ALWAYS, own_instance=True, level="disk"),
    ),
    restart_pause_s=0.5,
    memory_policies=(
        MemoryPolicy("maxmemory 24mb, noeviction", {"maxmemory": "24mb", "maxmemory-policy": "noeviction"},
                     "producer refused with a clear error once full; nothing accepted lost or run twice",
                     refuses_producers=True, count_evicted=evicted_keys,
                     worker_options={"lock_duration_ms": 3000, "stalled_interval_ms": 1000}),
        MemoryPolicy("maxmemory 24mb, volatile-lru", {"maxmemory": "24mb", "maxmemory-policy": "volatile-lru"},
                     "evicts lock keys: jobs may run twice or fail as stalled (why BullMQ asks for noeviction)",
                     refuses_producers=False, count_evicted=evicted_keys,
                     worker_options={"lock_duration_ms": 3000, "stalled_interval_ms": 1000}),
    ),
    read_settings=read_settings,
    profile_of=profile_of,
    server_pid=server_pid,
    memory_used_mb=memory_used_mb,
    inject_raw=inject_raw,
    drop_connections=drop_connections,
    replication=Replication(
        cluster_path="brokers.bullmq_redis.sentinel:RedisSentinelGroup",
        leader="primary",
        follower="replica",
        profiles=(
            DurabilityProfile("async replication (BullMQ's way)",
                              "a job is accepted once the primary has it on disk; replication is asynchronous, so "
                              "jobs the primary accepted but had not yet sent to a replica are lost when Sentinel "
                              "promotes that replica (Redis docs: Replication, Sentinel)", False, level="disk"),
            DurabilityProfile("WAIT 1", "a job is accepted once the primary has it on disk and 1 replica has "
                              "received it; Sentinel promotes the replica with the most data, so losing the "
                              "primary loses none of them (Redis docs: WAIT narrows the loss window, it does not "
                              "make failover strongly consistent)", True,
                              options={"wait_replicas": 1}, level="majority"),
        ),
        # One node at the replicated nodes' own promise: the cost rows price the copies alone.
        single_node=(DurabilityProfile("one node, AOF always", "fsync before each reply, one copy", False,
                                       server=AOF_ALWAYS, level="disk"),),
        server=AOF_ALWAYS,  # every node fsyncs before it replies, as every RabbitMQ node fsyncs its log
        node_level="disk",
    ),
    packages=("redis", "hiredis", "bullmq"),
    colour="#D55E00",
    marker="o",
)
