"""CPU seconds of the broker process and of the client processes, with psutil.

The broker's pid is found only when it runs on this host: Redis tells its own pid (INFO
server); RabbitMQ's Erlang VM is the process listening on the AMQP port. In a container or on
another host the broker's CPU is reported as unknown (None), never guessed.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import psutil

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None, ""}


def broker_pid(kind: str, url: str) -> int | None:
    parts = urlsplit(url)
    if kind == "memory":
        return os.getpid()
    if parts.hostname not in LOCAL_HOSTS:
        return None
    try:
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=2)
            pid = int(client.info("server").get("process_id", 0))
            client.close()
            return pid if pid and "redis" in psutil.Process(pid).name() else None
        port = parts.port or 5672
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


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (children not included)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class CpuMeter:
    """CPU used by a set of processes between ``begin()`` and ``end()``."""

    def __init__(self, pids: dict[str, list[int | None]]) -> None:
        self.pids = pids
        self.start: dict[str, list[float | None]] = {}
        self.used: dict[str, float | None] = {}

    def begin(self) -> None:
        self.start = {group: [cpu_seconds(p) for p in pids] for group, pids in self.pids.items()}

    def end(self) -> dict[str, float | None]:
        for group, pids in self.pids.items():
            total: float | None = 0.0
            for pid, before in zip(pids, self.start.get(group, []), strict=False):
                after = cpu_seconds(pid)
                if before is None or after is None:
                    total = None
                    break
                total += after - before  # type: ignore[operator]
            self.used[group] = round(total, 3) if total is not None else None
        return self.used
