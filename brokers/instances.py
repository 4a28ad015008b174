"""Broker processes of our own: ``redis-server`` and ``rabbitmq-server`` on free loopback ports.

Used two ways: by :mod:`brokers.provision` when a laptop has the binaries but no running
broker, and by fault tests and scenarios that must kill, restart or reconfigure a broker
(they never touch a shared one). Each instance has its own port, its own data folder in a
temporary directory, listens on 127.0.0.1 only, and is stopped at interpreter exit.

RabbitMQ notes, for this kind of machine (Debian packages, running as root):
* each node needs its own node name (RABBITMQ_NODENAME), AMQP port and distribution port;
* the data folder must belong to the ``rabbitmq`` user, which runs the node and shares the
  Erlang cookie in /var/lib/rabbitmq with ``rabbitmqctl``;
* ``rabbitmq-server`` runs the Erlang VM as a child and does not pass SIGKILL on, so a crash
  is simulated by killing the VM itself (its pid is in RABBITMQ_PID_FILE), and a clean stop is
  ``rabbitmqctl -n NODE stop``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

WEAKREFS: list["LocalInstance"] = []


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


def _find(*candidates: str) -> str | None:
    for c in candidates:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.access(path, os.X_OK):
            return path
    return None


def redis_server_binary() -> str | None:
    return _find("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server",
                 "/opt/homebrew/bin/redis-server")


def rabbitmq_binaries() -> tuple[str, str] | None:
    """(rabbitmq-server, rabbitmqctl), the real scripts rather than Debian's su wrappers."""
    server = _find("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server",
                   "/usr/sbin/rabbitmq-server", "/opt/homebrew/sbin/rabbitmq-server")
    ctl = _find("/usr/lib/rabbitmq/bin/rabbitmqctl", "rabbitmqctl", "/usr/sbin/rabbitmqctl",
                "/opt/homebrew/sbin/rabbitmqctl")
    return (server, ctl) if server and ctl else None


@dataclass
class LocalInstance:
    """A broker process we started. ``kill()`` simulates a crash; ``start()`` again restarts
    it on the same port with the same data folder (so persistence can be tested)."""

    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="brokerbench-")))
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        WEAKREFS.append(self)

    @property
    def url(self) -> str:
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
            if port_open(self.port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not open port {self.port} within {timeout:.0f} s; see {self.folder}")

    def _detached(self) -> bool:
        return False


@dataclass
class RedisInstance(LocalInstance):
    """``redis-server`` with the settings you pass, e.g. {"appendonly": "yes",
    "appendfsync": "always"} or {"maxmemory": "20mb", "maxmemory-policy": "noeviction"}."""

    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self, timeout: float = 20.0) -> "RedisInstance":
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server / brew install redis)")
        settings = {"bind": "127.0.0.1", "port": str(self.port), "dir": str(self.folder),
                    "save": "", "appendonly": "no", "protected-mode": "yes", "daemonize": "no",
                    "logfile": str(self.folder / "redis.log"), **self.config}
        args = [binary]
        for key, value in settings.items():
            args += [f"--{key}", value]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.folder)
        self._wait_port(timeout, "redis-server")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class RabbitMQInstance(LocalInstance):
    """A RabbitMQ node of our own. ``config`` holds rabbitmq.conf lines (key = value)."""

    config: Mapping[str, str] = field(default_factory=dict)
    dist_port: int = field(default_factory=free_port)

    @property
    def node(self) -> str:
        return f"brokerbench{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("rabbitmq")
        except KeyError:
            return None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        user = self._user()
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(self.folder / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.folder / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.folder / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.folder / "log"),
            RABBITMQ_PID_FILE=str(self.folder / "node.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def _prepare(self) -> None:
        lines = {"listeners.tcp.local": f"127.0.0.1:{self.port}", "loopback_users.guest": "true",
                 **self.config}
        (self.folder / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        (self.folder / "rabbitmq-env.conf").write_text("")
        (self.folder / "enabled_plugins").write_text("[].\n")
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir(exist_ok=True)
        user = self._user()
        if user is not None:
            for path in [self.folder, *self.folder.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        binaries = rabbitmq_binaries()
        if binaries is None:
            raise RuntimeError("rabbitmqctl is not installed")
        user = self._user()
        return subprocess.run([binaries[1], "-n", self.node, *args], env=self._env(), capture_output=True,
                              text=True, timeout=timeout, cwd=self.folder,
                              user=user.pw_uid if user else None, group=user.pw_gid if user else None)

    def start(self, timeout: float = 90.0) -> "RabbitMQInstance":
        binaries = rabbitmq_binaries()
        if binaries is None:
            raise RuntimeError("rabbitmq-server is not installed (apt install rabbitmq-server / "
                               "brew install rabbitmq)")
        self._prepare()
        user = self._user()
        log = open(self.folder / "server.out", "ab")
        self.proc = subprocess.Popen(
            [binaries[0]], env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None)
        self._wait_port(timeout, f"rabbitmq-server (node {self.node})")
        return self

    @property
    def pid(self) -> int | None:
        """The Erlang VM's pid (not the wrapper script's)."""
        try:
            return int((self.folder / "node.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid, 15)
            (self.folder / "node.pid").unlink(missing_ok=True)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None and self.pid is None:
            return
        try:
            self.ctl("stop", timeout=60)
        except (subprocess.TimeoutExpired, RuntimeError):
            pass
        self.kill()


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@atexit.register
def _stop_all() -> None:
    for instance in WEAKREFS:
        try:
            instance.cleanup()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
