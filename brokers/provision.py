"""Find the brokers to run against, or start them, and say plainly what is missing.

Order, for each broker kind (its :class:`~brokers.registry.Driver` says where to look):
1. the URL in the kind's environment variable (``REDIS_URL``, ``AMQP_URL``...), used as is
   (an error if it does not answer: a URL you set is never silently replaced);
2. the kind's default URL on localhost, if something answers there;
3. the kind's server binary, started on a free loopback port in a temporary folder and stopped
   at exit (a private instance, :mod:`brokers.instances`);
4. Docker, through testcontainers, where a Docker engine runs.
Otherwise :class:`BrokerNotFound` lists what was tried and how to fix it.

Fault tests and scenarios do not use this: they start private instances they may kill and
restart.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .contract import Broker, BrokerError
from .urls import redact


class BrokerNotFound(BrokerError):
    """No way to reach or start a broker worked; the message lists each way and why."""


@dataclass
class Endpoint:
    kind: str
    url: str
    source: str  # "env", "localhost", "local binary", "docker", "in-process"
    instance: Any = field(default=None, repr=False)

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "url": redact(self.url), "source": self.source}


_found: dict[str, Endpoint] = {}


def answers(kind: str, url: str, timeout: float = 2.0) -> str | None:
    """None if a broker of ``kind`` answers at ``url``, else why not."""
    driver = registry.get(kind)
    if driver.probe is None:
        return None
    try:
        driver.probe(url, timeout)
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


def _start_docker(driver: registry.Driver) -> Endpoint:
    if driver.start_container is None or not driver.docker_image:
        raise BrokerNotFound(f"no Docker image is known for {driver.label}")
    try:
        url, container = driver.start_container(driver.docker_image)
    except ImportError as exc:
        raise BrokerNotFound(f"testcontainers is not installed ({exc}); pip install 'brokerbench[docker]'") from None
    return Endpoint(driver.kind, url, "docker", container)


def find(kind: str, *, allow_start: bool = True) -> Endpoint:
    """The broker of ``kind`` to use, found or started once per process."""
    driver = registry.get(kind)
    if kind in _found:
        return _found[kind]
    if driver.in_process:
        return _found.setdefault(kind, Endpoint(kind, driver.default_url, "in-process"))
    tried: list[str] = []
    env_url = os.environ.get(driver.env_var) if driver.env_var else None
    if env_url:
        why = answers(kind, env_url)
        if why is None:
            return _found.setdefault(kind, Endpoint(kind, env_url, "env"))
        raise BrokerNotFound(f"{driver.env_var} is set but {why}")
    if driver.env_var:
        tried.append(f"{driver.env_var}: not set")

    if driver.default_url:
        why = answers(kind, driver.default_url)
        if why is None:
            return _found.setdefault(kind, Endpoint(kind, driver.default_url, "localhost"))
        tried.append(f"{redact(driver.default_url)}: {why}")

    if allow_start:
        server = driver.server_class()
        if server is not None and server.binary():
            instance = server()
            try:
                instance.start()
                return _found.setdefault(kind, Endpoint(kind, instance.url, "local binary", instance))
            except (RuntimeError, OSError) as exc:
                instance.cleanup()
                tried.append(f"local binary: failed to start: {exc}")
        elif server is not None:
            tried.append(f"local binary: {server.program} not installed")
        docker_why = _docker_engine() if driver.docker_image else "no Docker image known"
        if docker_why is None:
            try:
                return _found.setdefault(kind, _start_docker(driver))
            except Exception as exc:  # noqa: BLE001 - report any docker failure plainly
                tried.append(f"docker: {exc}")
        else:
            tried.append(f"docker: {docker_why}")
    raise BrokerNotFound(f"no {driver.label} available. Tried:\n  - " + "\n  - ".join(tried)
                         + f"\nTo fix: {driver.install_hint}.")


def open_broker(kind: str, url: str | None = None, **options: Any) -> Broker:
    """An adapter of ``kind`` on ``url`` or on the broker :func:`find` gives."""
    return registry.get(kind).open(url or find(kind).url, **options)


def main(argv: list[str] | None = None) -> int:
    """``python -m brokers.provision [--no-start] [kind...]``: say where each broker is."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m brokers.provision", description=main.__doc__)
    parser.add_argument("kinds", nargs="*", default=registry.compared_kinds(),
                        help="broker kinds (default: the compared ones)")
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
