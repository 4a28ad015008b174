"""Broker processes of our own, on free loopback ports: what every private instance shares.

Used two ways: by :mod:`brokers.provision` when a laptop has a broker's binaries but no running
broker, and by fault tests and scenarios that must kill, restart or reconfigure a broker (they
never touch a shared one). Each instance has its own port, its own data folder in a temporary
directory, listens on 127.0.0.1 only, and is stopped at interpreter exit.

Each broker kind's instance class lives with its adapter (``brokers/<adapter>/server.py``);
:func:`private_instance` finds it through the registry.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

WEAKREFS: list["PrivateInstance"] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_binary(*candidates: str) -> str | None:
    """The first candidate that is an executable (absolute paths as given, names on PATH)."""
    for c in candidates:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.access(path, os.X_OK):
            return path
    return None


def wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@runtime_checkable
class PrivateInstance(Protocol):
    """What scenarios and provisioning use of a private broker instance."""

    config: Mapping[str, str]

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def start(self, timeout: float = ...) -> Any: ...

    def kill(self) -> None: ...

    def stop(self) -> None: ...

    def cleanup(self) -> None: ...


@dataclass
class LocalInstance:
    """A broker process we started. ``kill()`` simulates a crash; ``start()`` again restarts
    it on the same port with the same data folder (so persistence can be tested).

    Subclasses say which program they run (:meth:`binary`, :attr:`program`) and how.
    """

    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="brokerbench-")))
    proc: subprocess.Popen | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"   # the address it listens on (loopback, or its own in a namespace)

    program = "?"  # the program's name, for messages ("redis-server is not installed")

    def __post_init__(self) -> None:
        WEAKREFS.append(self)

    @classmethod
    def binary(cls) -> str | None:
        """Path of the program this instance runs, or None if it is not installed."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def start(self, timeout: float = 90.0) -> "LocalInstance":
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; whatever was not on disk is gone."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "LocalInstance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _wait_port(self, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None and not self._detached():
                raise RuntimeError(f"{what} exited with code {self.proc.returncode}; see {self.folder}")
            if port_open(self.port, self.host):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not open port {self.port} within {timeout:.0f} s; see {self.folder}")

    def _detached(self) -> bool:
        return False


def private_instance(kind: str, config: Mapping[str, str] | None = None) -> PrivateInstance:
    """A private instance of ``kind`` (not started), with ``config`` as its server settings."""
    from .registry import get

    driver = get(kind)
    cls = driver.server_class()
    if cls is None:
        raise ValueError(f"{driver.label} has no private instances")
    return cls(config=dict(config or {}))


@atexit.register
def _stop_all() -> None:
    for instance in WEAKREFS:
        try:
            instance.cleanup()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
