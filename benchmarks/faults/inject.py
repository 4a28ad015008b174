"""Faults a scenario (or a test) injects: raw bad messages, server-side connection kills.

They act from the outside, the way an operator or a bad client would: a raw message written
past the producer, ``CLIENT KILL`` on Redis, ``rabbitmqctl close_connection`` on RabbitMQ.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from typing import Any

import pika
import redis

from brokers.contract import Broker
from brokers.instances import RabbitMQInstance


def inject_raw(broker: Broker, name: str, raw: bytes) -> str:
    """Put a job whose payload is ``raw`` (maybe not JSON) straight into the default lane."""
    job_id = f"raw{uuid.uuid4().hex[:8]}"
    if broker.kind == "memory":
        return broker.add_raw(name, raw)  # type: ignore[attr-defined]
    if broker.kind == "redis":
        keys = broker.lane_keys["default"]  # type: ignore[attr-defined]
        pipe = broker.client.pipeline()  # type: ignore[attr-defined]
        pipe.hset(keys.job(job_id), mapping={"name": name, "data": raw, "opts": '{"attempts":3}',
                                             "timestamp": int(time.time() * 1000), "delay": 0, "priority": 0})
        pipe.lpush(keys.wait, job_id)
        pipe.zadd(keys.marker, {"0": 0})
        pipe.execute()
    else:
        ch = _raw_channel(broker)
        ch.basic_publish(broker.topology.exchange, name, raw,  # type: ignore[attr-defined]
                         pika.BasicProperties(message_id=job_id, type=name, delivery_mode=2,
                                              headers={"bb-attempts": 3}))
    return job_id


_RAW: dict[int, tuple[pika.BlockingConnection, Any]] = {}


def _raw_channel(broker: Broker) -> Any:
    """One confirming channel per broker object for raw messages (a connection each time would
    slow the injecting producer down more than the fault it injects)."""
    conn, ch = _RAW.get(id(broker), (None, None))
    if conn is None or not conn.is_open or not ch.is_open:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))  # type: ignore[attr-defined]
        ch = conn.channel()
        ch.confirm_delivery()
        _RAW[id(broker)] = (conn, ch)
    return ch


def kill_redis_clients(url: str, name_prefix: str = "brokerbench:", pid: int | None = None,
                       spare_pid: int | None = None) -> int:
    """CLIENT KILL every connection named ``name_prefix...`` (of process ``pid`` if given, and
    not of ``spare_pid``). Returns how many were killed."""
    admin = redis.Redis.from_url(url)
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


def rabbitmqctl(instance: RabbitMQInstance | None, *args: str) -> str:
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


def kill_amqp_connections(instance: RabbitMQInstance | None, name_prefix: str = "brokerbench:",
                          pid: int | None = None, spare_pid: int | None = None, wait_s: float = 10.0) -> int:
    """Close (rabbitmqctl close_connection) every connection whose connection_name starts with
    ``name_prefix`` (of process ``pid`` if given, not of ``spare_pid``); waits until RabbitMQ
    lists at least one."""
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
