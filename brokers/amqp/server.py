"""Private RabbitMQ nodes: our own node on free loopback ports, in a temporary folder.

Notes for this kind of machine (Debian packages, running as root):
* each node needs its own node name (RABBITMQ_NODENAME), AMQP port and distribution port;
* the data folder must belong to the service user, which runs the node and shares the Erlang
  cookie in its home folder with ``rabbitmqctl``;
* ``rabbitmq-server`` runs the Erlang VM as a child and does not pass SIGKILL on, so a crash is
  simulated by killing the VM itself (its pid is in RABBITMQ_PID_FILE), and a clean stop is
  ``rabbitmqctl -n NODE stop``;
* in a network namespace of our own (:mod:`brokers.netns`, for partitions) a node is named after
  its own address (a long name, ``brokerbench<port>@198.18.x.y``), listens and opens its
  distribution connections from that address only, and finds its peers through the ``epmd``
  the first node starts in the namespace; ``rabbitmqctl`` runs in the namespace too.

Who may use a node: not guest/guest. Each node (each cluster: one for all its nodes) has a user
of its own with a random name and password (``default_user`` / ``default_pass``: the one user
RabbitMQ creates on its first boot, instead of guest), written to ``rabbitmq.conf`` in its
folder (mode 0600, owned by the service user), never on a command line; its
:attr:`~RabbitMQInstance.url` carries them. The Erlang distribution (and ``rabbitmqctl``) needs
the service user's cookie. As root a node runs as the service user.

Dead letters of quorum queues (at-least-once dead-lettering) wait for the target queue's
publisher confirm for ``dead_letter_worker_publisher_confirm_timeout`` ms before sending again
(rabbit application environment; RabbitMQ 3.10's default: 180,000, so a delayed job could wait
3 minutes; rabbitmq.conf has no key for it, so ``advanced.config`` sets it): here
:data:`DEAD_LETTER_CONFIRM_TIMEOUT_MS`.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from ..instances import LocalInstance, NotOurProcess, as_user, find_binary, free_port, give_to, wait_gone, write_private
from ..urls import new_secret, userinfo
from .driver import SERVICE_USER

log = logging.getLogger(__name__)

DEAD_LETTER_CONFIRM_TIMEOUT_MS = 5000


def new_user() -> str:
    """A random user name (letters and digits: safe in a URL and in rabbitmq.conf)."""
    return "bb" + new_secret(6)


def rabbitmq_binaries() -> tuple[str, str] | None:
    """(rabbitmq-server, rabbitmqctl), the real scripts rather than Debian's su wrappers."""
    server = find_binary("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server",
                         "/usr/sbin/rabbitmq-server", "/opt/homebrew/sbin/rabbitmq-server")
    ctl = find_binary("/usr/lib/rabbitmq/bin/rabbitmqctl", "rabbitmqctl", "/usr/sbin/rabbitmqctl",
                      "/opt/homebrew/sbin/rabbitmqctl")
    return (server, ctl) if server and ctl else None


@dataclass
class RabbitMQInstance(LocalInstance):
    """A RabbitMQ node of our own. ``config`` holds rabbitmq.conf lines (key = value).
    ``namespace``: run inside it, on ``host`` (its address there). ``username`` / ``password``:
    its only user (random unless given; a cluster gives all its nodes the same)."""

    dist_port: int = field(default_factory=free_port)
    namespace: Any = None
    username: str = field(default_factory=new_user)
    password: str = field(default_factory=new_secret, repr=False)
    dead_letter_confirm_timeout_ms: int = DEAD_LETTER_CONFIRM_TIMEOUT_MS

    program = "rabbitmq-server"

    @classmethod
    def binary(cls) -> str | None:
        found = rabbitmq_binaries()
        return found[0] if found else None

    @property
    def node(self) -> str:
        return f"brokerbench{self.port}@{self.host if self.namespace is not None else 'localhost'}"

    @property
    def url(self) -> str:
        return f"amqp://{userinfo(self.username, self.password)}{self.host}:{self.port}/%2F"

    def _user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        user = self._user()
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=self.host,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(self.folder / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.folder / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.folder / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.folder / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.folder / "log"),
            RABBITMQ_PID_FILE=str(self.folder / "node.pid"),
        )
        address = "{" + self.host.replace(".", ",") + "}"
        if self.namespace is None:
            env.update(RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=f"-kernel inet_dist_use_interface {address}",
                       ERL_EPMD_ADDRESS="127.0.0.1")
        else:  # own address for distribution both ways (a cut drops it); epmd on the namespace's
            env.update(RABBITMQ_USE_LONGNAME="true", RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                f"-kernel inet_dist_use_interface {address} -kernel inet_dist_connect_options [{{ip,{address}}}]"))
        return env

    def _command(self, args: list[str]) -> tuple[list[str], dict[str, Any]]:
        """``args`` as the service user (and in the namespace, if any): the command and the
        keyword arguments for :mod:`subprocess`."""
        user = self._user()
        if self.namespace is not None:
            return self.namespace.command(args, user=user), {}
        return args, as_user(user)

    def _prepare(self) -> None:
        user = self._user()
        # The node's only user (RabbitMQ creates default_user on its first boot, instead of
        # guest); loopback_users would only name guest, who does not exist here.
        lines = {"listeners.tcp.local": f"{self.host}:{self.port}", "loopback_users": "none",
                 "default_user": self.username, "default_pass": self.password, **self.config}
        write_private(self.folder / "rabbitmq.conf", "".join(f"{k} = {v}\n" for k, v in lines.items()), user)
        timeout_ms = int(self.dead_letter_confirm_timeout_ms)
        (self.folder / "advanced.config").write_text(
            f"[{{rabbit, [{{dead_letter_worker_publisher_confirm_timeout, {timeout_ms}}}]}}].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")
        (self.folder / "enabled_plugins").write_text("[].\n")
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir(exist_ok=True)
        give_to(user, [self.folder])

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        binaries = rabbitmq_binaries()
        if binaries is None:
            raise RuntimeError("rabbitmqctl is not installed")
        command, as_user = self._command([binaries[1], "-n", self.node, *args])
        return subprocess.run(command, env=self._env(), capture_output=True, text=True, timeout=timeout,
                              cwd=self.folder, **as_user)

    def start(self, timeout: float = 90.0) -> "RabbitMQInstance":
        binaries = rabbitmq_binaries()
        if binaries is None:
            raise RuntimeError("rabbitmq-server is not installed (apt install rabbitmq-server / "
                               "brew install rabbitmq)")
        self._prepare()
        command, as_user = self._command([binaries[0]])
        for attempt in (1, 2):
            with open(self.folder / "server.out", "ab") as out:
                self.proc = subprocess.Popen(command, env=self._env(), stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True,
                                             **as_user)
            try:
                self._wait_port(timeout, f"rabbitmq-server (node {self.node})")
                return self
            except RuntimeError as exc:
                # Seen rarely: right after a SIGKILL the start script exits (code 0) before the
                # node is up, as if the old node were still registered; and once in CI a node of
                # a cluster booting on a busy machine still had no port after 120 s. One more
                # try from scratch, after a pause; server.out keeps both attempts' output.
                if attempt == 2:
                    raise RuntimeError(f"{exc}; the end of its output:\n{self._output_tail()}") from None
                log.warning("%s; starting it once more", exc)
                self.kill()
                time.sleep(3.0)
        return self

    def _output_tail(self, lines: int = 15) -> str:
        """The last lines of the node's console output, for an error message."""
        try:
            text = (self.folder / "server.out").read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"

    @property
    def pid(self) -> int | None:
        """The Erlang VM's pid (not the wrapper script's)."""
        try:
            return int((self.folder / "node.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_mine(self, pid: int, name: str, cmdline: list[str]) -> bool:
        """This node's Erlang VM: a ``beam`` process started with this node's name (the
        RABBITMQ_NODENAME we gave it: its command line does not hold it), running as the service
        user (or us). The pid file lives in a folder the service user owns: a pid written there
        that names any other process is never signalled, as root (see :meth:`LocalInstance.owns`)."""
        import psutil

        if "beam" not in name:
            return False
        try:
            proc = psutil.Process(pid)
            started_as, uid = proc.environ().get("RABBITMQ_NODENAME"), proc.uids().real
        except psutil.Error:
            return False
        user = self._user()
        return started_as == self.node and uid in {os.getuid(), user.pw_uid if user else os.getuid()}

    def kill(self) -> None:
        pid = self.pid
        if pid is not None:
            try:
                self.signal(signal.SIGKILL, pid)
                wait_gone(pid, 15)
            except (ProcessLookupError, NotOurProcess):
                pass
        if pid is not None:
            (self.folder / "node.pid").unlink(missing_ok=True)
        if self.proc is not None:
            if self.proc.returncode is None:  # its leader not reaped yet: the group is still the one we made
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
