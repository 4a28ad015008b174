"""Faults for tests: raw messages that bypass the producer, and server-side connection kills."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pika
import redis

from brokers.contract import Broker
from brokers.instances import RabbitMQInstance
from brokers.provision import Endpoint


def inject_raw(broker: Broker, name: str, raw: bytes) -> str:
    """Put a job whose payload is ``raw`` (maybe not JSON) straight into the default lane."""
    job_id = f"raw{uuid.uuid4().hex[:8]}"
    if broker.kind == "memory":
        return broker.add_raw(name, raw)  # type: ignore[attr-defined]
    if broker.kind == "redis":
        keys = broker.lane_keys["default"]  # type: ignore[attr-defined]
        pipe = broker.client.pipeline()  # type: ignore[attr-defined]
        pipe.hset(keys.job(job_id), mapping={"name": name, "data": raw, "opts": '{"attempts":3}',
                                             "timestamp": int(time.time() * 1000), "delay": 0,
                                             "priority": 0})
        pipe.lpush(keys.wait, job_id)
        pipe.zadd(keys.marker, {"0": 0})
        pipe.execute()
    else:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))  # type: ignore[attr-defined]
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(broker.topology.exchange, name, raw,  # type: ignore[attr-defined]
                         pika.BasicProperties(message_id=job_id, type=name, delivery_mode=2,
                                              headers={"bb-attempts": 3}))
        conn.close()
    return job_id


def kill_redis_clients(url: str, name_prefix: str = "brokerbench:") -> int:
    """CLIENT KILL every connection of this process whose name starts with ``name_prefix``."""
    admin = redis.Redis.from_url(url)
    killed = 0
    suffix = f":{os.getpid()}"
    for client in admin.client_list():
        name = client.get("name", "")
        if name.startswith(name_prefix) and name.endswith(suffix):
            killed += admin.client_kill_filter(_id=client["id"])
    admin.close()
    return killed


def _rabbitmqctl(endpoint: Endpoint, *args: str) -> str:
    if isinstance(endpoint.instance, RabbitMQInstance):
        out = endpoint.instance.ctl(*args)
    else:
        ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        if not os.path.exists(ctl):
            raise AssertionError("closing AMQP connections from the server side needs rabbitmqctl "
                                 f"for the broker at {endpoint.describe()['url']}")
        out = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def kill_amqp_connections(endpoint: Endpoint, name_prefix: str = "brokerbench:",
                          wait_s: float = 10.0) -> int:
    """Close (server side, rabbitmqctl close_connection) every connection of this process whose
    connection_name starts with ``name_prefix``; waits until RabbitMQ lists at least one."""
    pattern = re.compile(r'\{"connection_name","(' + re.escape(name_prefix) + r'[^"]*:'
                         + str(os.getpid()) + r')"\}')
    deadline = time.monotonic() + wait_s
    while True:
        listing = _rabbitmqctl(endpoint, "list_connections", "pid", "client_properties", "-q",
                               "--no-table-headers")
        pids = [line.split("\t", 1)[0] for line in listing.splitlines() if pattern.search(line)]
        if pids or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for pid in pids:
        _rabbitmqctl(endpoint, "close_connection", pid, "brokerbench test: dropped connection")
    return len(pids)
