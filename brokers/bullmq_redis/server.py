"""Private ``redis-server`` instances: our own Redis on a free loopback port, in a temporary folder.

Each requires a password of its own (``requirepass``, random unless the config sets one; also
its ``masterauth``, so a replica of a node with the same password syncs), keeps protected mode
on, and, as root, runs as the ``redis`` system user (else ``nobody``), owning its folder. Its
settings go to ``redis.conf`` in that folder (mode 0600), not on the command line. Its
:attr:`~RedisInstance.url` carries the password.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..instances import LocalInstance, as_user, find_binary, give_to, service_user, write_private
from ..urls import new_secret, userinfo

SERVICE_USERS = ("redis",)
EMPTY = '""'  # an empty value in redis.conf (e.g. ``save ""``)


@dataclass
class RedisInstance(LocalInstance):
    """``redis-server`` with the settings you pass, e.g. {"appendonly": "yes",
    "appendfsync": "always"} or {"maxmemory": "20mb", "maxmemory-policy": "noeviction"}.

    ``password``: what it requires (random by default; ``config["requirepass"]`` wins; None:
    none, then protected mode keeps it to loopback clients).
    ``namespace`` (a :class:`brokers.netns.Namespace`): run inside it, on ``host`` (its address
    there), which is also the source of its own connections (so a partition can cut them)."""

    namespace: Any = None
    password: str | None = field(default_factory=new_secret, repr=False)
    program = "redis-server"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.config.get("requirepass"):
            self.password = self.config["requirepass"]

    @classmethod
    def binary(cls) -> str | None:
        return find_binary("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server",
                           "/opt/homebrew/bin/redis-server")

    @property
    def url(self) -> str:
        return f"redis://{userinfo(None, self.password)}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def settings(self) -> dict[str, str]:
        """Every setting it starts with (``config`` last, so it wins)."""
        found: dict[str, str] = {"bind": self.host, "port": str(self.port), "dir": str(self.folder),
                                 "save": "", "appendonly": "no", "protected-mode": "yes", "daemonize": "no",
                                 "logfile": str(self.folder / "redis.log")}
        if self.namespace is not None:  # its own address as the source of its own connections
            found["bind-source-addr"] = self.host
        if self.password:
            found.update({"requirepass": self.password, "masterauth": self.password})
        found.update(self.config)
        return found

    def start(self, timeout: float = 20.0) -> "RedisInstance":
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server / brew install redis)")
        conf = self._write_conf("redis.conf", self.settings())
        self._launch([binary, str(conf)], timeout)
        return self

    def _write_conf(self, name: str, settings: Mapping[str, str] | list[str]) -> Any:
        """``settings`` (a mapping, or ready lines) as a config file in the folder, mode 0600."""
        lines = settings if isinstance(settings, list) else [
            f"{key} {value if value != '' else EMPTY}" for key, value in settings.items()]
        return write_private(self.folder / name, "\n".join(lines) + "\n")

    def _launch(self, args: list[str], timeout: float) -> None:
        """Run ``args`` as the service user (inside the namespace, if any) and wait for the port."""
        user = service_user(*SERVICE_USERS)
        if user is not None and self.namespace is not None and not self.namespace.can_switch_user():
            user = None  # see Namespace.can_switch_user: then it runs as root, its password guarding it
        give_to(user, [self.folder])
        kwargs: dict[str, Any] = {}
        if self.namespace is not None:
            args = self.namespace.command(args, user=user)
        else:
            kwargs = as_user(user)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.folder, **kwargs)
        self._wait_port(timeout, self.program)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # our own child, not yet reaped: its pid is its own
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
