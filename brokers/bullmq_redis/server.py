"""Private ``redis-server`` instances: our own Redis on a free loopback port, in a temporary folder."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from typing import Any

from ..instances import LocalInstance, find_binary


@dataclass
class RedisInstance(LocalInstance):
    """``redis-server`` with the settings you pass, e.g. {"appendonly": "yes",
    "appendfsync": "always"} or {"maxmemory": "20mb", "maxmemory-policy": "noeviction"}.

    ``namespace`` (a :class:`brokers.netns.Namespace`): run inside it, on ``host`` (its address
    there), which is also the source of its own connections (so a partition can cut them)."""

    namespace: Any = None
    program = "redis-server"

    @classmethod
    def binary(cls) -> str | None:
        return find_binary("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server",
                           "/opt/homebrew/bin/redis-server")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self, timeout: float = 20.0) -> "RedisInstance":
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server / brew install redis)")
        settings = {"bind": self.host, "port": str(self.port), "dir": str(self.folder),
                    "save": "", "appendonly": "no", "protected-mode": "yes", "daemonize": "no",
                    "logfile": str(self.folder / "redis.log")}
        if self.namespace is not None:  # reached over our own veth only; its own address as source
            settings.update({"protected-mode": "no", "bind-source-addr": self.host})
        settings.update(self.config)
        args = [binary]
        for key, value in settings.items():
            args += [f"--{key}", value]
        self._launch(args, timeout)
        return self

    def _launch(self, args: list[str], timeout: float) -> None:
        """Run ``args`` (inside the namespace, if any) and wait for the port."""
        if self.namespace is not None:
            args = self.namespace.command(args)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.folder)
        self._wait_port(timeout, self.program)

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
