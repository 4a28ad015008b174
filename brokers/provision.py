"""Find the brokers to run against, or start them, and say plainly what is missing.

Order, for each broker:
1. the URL in the environment (``REDIS_URL`` / ``AMQP_URL``), used as is (an error if it does
   not answer: a URL you set is never silently replaced);
2. the default port on localhost (6379 / 5672, guest:guest), if it answers;
3. a local ``redis-server`` / ``rabbitmq-server`` binary, started on a free loopback port in
   a temporary folder and stopped at exit;
4. Docker, through testcontainers, where a Docker engine runs.
Otherwise :class:`BrokerNotFound` lists what was tried and how to fix it.

Fault tests and scenarios do not use this: they start private instances
(:mod:`brokers.instances`) they may kill and restart.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .contract import BrokerError
from .instances import (
    RabbitMQInstance,
    RedisInstance,
    rabbitmq_binaries,
    redis_server_binary,
)
from .urls import redact

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
ENV = {"redis": "REDIS_URL", "rabbitmq": "AMQP_URL"}

HOW_TO = {
    "redis": ("install Redis 7 (apt install redis-server, brew install redis), or run "
              "`docker compose up -d` in the project folder, or set REDIS_URL=redis://host:port/0"),
    "rabbitmq": ("install RabbitMQ (apt install rabbitmq-server, brew install rabbitmq), or run "
                 "`docker compose up -d` in the project folder, or set "
                 "AMQP_URL=amqp://user:password@host:5672/%2F"),
}


class BrokerNotFound(BrokerError):
    """No way to reach or start a broker worked; the message lists each way and why."""


@dataclass
class Endpoint:
    kind: str
    url: str
    source: str  # "env", "localhost", "local binary", "docker"
    instance: Any = field(default=None, repr=False)

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "url": redact(self.url), "source": self.source}


_found: dict[str, Endpoint] = {}


def _answers(kind: str, url: str, timeout: float = 2.0) -> str | None:
    """None if a broker answers at url, else why not."""
    try:
        if kind == "redis":
            from .bullmq_redis.connection import check

            check(url, timeout)
        else:
            from .amqp.connection import connect

            connect(url, role="probe", connect_timeout=timeout).close()
        return None
    except BrokerError as exc:
        return str(exc)


def _docker_engine() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        out = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker not usable: {exc}"
    if out.returncode != 0:
        return "no Docker engine answers (" + (out.stderr.strip().splitlines() or ["?"])[-1] + ")"
    return None


def _start_docker(kind: str) -> Endpoint:
    try:
        if kind == "redis":
            from testcontainers.redis import RedisContainer

            container = RedisContainer("redis:7-alpine").start()
            url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        else:
            from testcontainers.rabbitmq import RabbitMqContainer

            container = RabbitMqContainer("rabbitmq:3.13-management").start()
            url = (f"amqp://guest:guest@{container.get_container_host_ip()}:"
                   f"{container.get_exposed_port(5672)}/%2F")
    except ImportError as exc:
        raise BrokerNotFound(f"testcontainers is not installed ({exc}); pip install 'brokerbench[docker]'") from None
    import atexit

    atexit.register(container.stop)
    return Endpoint(kind, url, "docker", container)


def find(kind: str, *, allow_start: bool = True) -> Endpoint:
    """The broker of ``kind`` ("redis" or "rabbitmq") to use, found or started once per process."""
    if kind not in ENV:
        raise ValueError(f"unknown broker kind {kind!r}: use 'redis' or 'rabbitmq'")
    if kind in _found:
        return _found[kind]
    tried: list[str] = []
    env_url = os.environ.get(ENV[kind])
    if env_url:
        why = _answers(kind, env_url)
        if why is None:
            return _found.setdefault(kind, Endpoint(kind, env_url, "env"))
        raise BrokerNotFound(f"{ENV[kind]} is set but {why}")
    tried.append(f"{ENV[kind]}: not set")

    default = DEFAULT_REDIS_URL if kind == "redis" else DEFAULT_AMQP_URL
    why = _answers(kind, default)
    if why is None:
        return _found.setdefault(kind, Endpoint(kind, default, "localhost"))
    tried.append(f"{redact(default)}: {why}")

    if allow_start:
        binary = redis_server_binary() if kind == "redis" else rabbitmq_binaries()
        if binary:
            instance = RedisInstance() if kind == "redis" else RabbitMQInstance()
            try:
                instance.start()
                return _found.setdefault(kind, Endpoint(kind, instance.url, "local binary", instance))
            except (RuntimeError, OSError) as exc:
                instance.cleanup()
                tried.append(f"local binary: failed to start: {exc}")
        else:
            tried.append("local binary: " + ("redis-server" if kind == "redis" else "rabbitmq-server")
                         + " not installed")
        docker_why = _docker_engine()
        if docker_why is None:
            try:
                return _found.setdefault(kind, _start_docker(kind))
            except Exception as exc:  # noqa: BLE001 - report any docker failure plainly
                tried.append(f"docker: {exc}")
        else:
            tried.append(f"docker: {docker_why}")
    name = "Redis" if kind == "redis" else "RabbitMQ"
    raise BrokerNotFound(f"no {name} available. Tried:\n  - " + "\n  - ".join(tried)
                         + f"\nTo fix: {HOW_TO[kind]}.")


def open_broker(kind: str, url: str | None = None, **options: Any):  # type: ignore[no-untyped-def]
    """An adapter of ``kind`` ("redis", "rabbitmq") on ``url`` or on the broker :func:`find` gives."""
    from .registry import adapter_class

    return adapter_class(kind)(url or find(kind).url, **options)



def main(argv: list[str] | None = None) -> int:
    """``python -m brokers.provision [--no-start] [kind...]``: say where each broker is."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m brokers.provision", description=main.__doc__)
    parser.add_argument("kinds", nargs="*", default=list(ENV))
    parser.add_argument("--no-start", action="store_true", help="only look; start nothing")
    args = parser.parse_args(argv)
    status = 0
    for kind in args.kinds:
        try:
            print(f"{kind}: {find(kind, allow_start=not args.no_start).describe()}")
        except BrokerNotFound as exc:
            print(f"{kind}: {exc}")
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
