"""Broker processes of our own, on free loopback ports: what every private instance shares.

Used two ways: by :mod:`brokers.provision` when a laptop has a broker's binaries but no running
broker, and by fault tests and scenarios that must kill, restart or reconfigure a broker (they
never touch a shared one). Each instance has its own port, its own data folder in a temporary
directory, listens on 127.0.0.1 only, and is stopped at interpreter exit.

Each broker kind's instance class lives with its adapter (``brokers/<adapter>/server.py``);
:func:`private_instance` finds it through the registry.

Guarantees every instance keeps:

* **who runs it**: as root, a broker runs as an unprivileged system user (:func:`service_user`:
  ``redis`` or ``rabbitmq``, else ``nobody``), owning its data folder; not root, it runs as us;
* **who may use it**: it requires credentials of its own, random per instance (made by
  :func:`brokers.urls.new_secret`), carried by its ``url`` only; they are written to files in
  its folder (mode 0600, the folder 0700), never on a command line (``ps`` shows those to every
  user) and never in a message: messages and results show URLs through :func:`brokers.urls.redact`;
* **which process it signals**: every signal goes through :meth:`LocalInstance.signal`, which
  sends it only to a process :meth:`LocalInstance.owns` (our own child, not yet reaped, or, for
  a broker that runs as a grandchild, its own program started with this instance's node name,
  as its user). A pid read from a file the broker's user can write is never signalled
  unchecked.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal as signals
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

WEAKREFS: list["PrivateInstance"] = []


class NotOurProcess(RuntimeError):
    """A pid that is not a process of the instance it was read for: nothing was signalled."""


def service_user(*names: str) -> pwd.struct_passwd | None:
    """The unprivileged user a broker we start runs as: the first of ``names`` (then
    ``nobody``) that exists, when we are root; None when we are not root (it runs as us) or no
    such user exists (then, and only then, it runs as root)."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    for name in (*names, "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def give_to(user: pwd.struct_passwd | None, paths: Iterable[Path]) -> None:
    """Make ``user`` (if any) the owner of ``paths`` (folders with everything in them)."""
    if user is None:
        return
    for top in paths:
        for path in [top, *(top.rglob("*") if top.is_dir() else ())]:
            os.chown(path, user.pw_uid, user.pw_gid)


def write_private(path: Path, text: str, user: pwd.struct_passwd | None = None) -> Path:
    """Write ``text`` to ``path``, readable by its owner only (``user`` if given): for files
    holding a password."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """:class:`subprocess.Popen` keyword arguments that run a program as ``user`` (none: as us),
    without root's supplementary groups."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def command_line(pid: int) -> tuple[str, list[str]] | None:
    """(name, command line) of process ``pid``; None if it does not exist (or cannot be read)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.name(), proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def owner_of(pid: int) -> "LocalInstance | None":
    """The private instance of this process that :meth:`~LocalInstance.owns` ``pid``, if any."""
    for instance in list(WEAKREFS):
        if isinstance(instance, LocalInstance) and instance.owns(pid):
            return instance
    return None


def signal_ours(pid: int | None, sig: int) -> None:
    """Send ``sig`` to ``pid`` only if a private instance of ours owns it (see
    :meth:`LocalInstance.owns`). ProcessLookupError if no such process runs; NotOurProcess if it
    is someone else's (nothing is sent)."""
    if pid is None or pid <= 0 or command_line(pid) is None:
        raise ProcessLookupError(f"no process {pid}")
    owner = owner_of(pid)
    if owner is None:
        raise NotOurProcess(f"process {pid} is not a broker process we started: not signalled")
    owner.signal(sig, pid)


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

    # Which processes are ours, and the only way to signal them -----------------------------

    def owns(self, pid: int | None) -> bool:
        """True if ``pid`` is this instance's process: our own child that has not been reaped
        (so its pid cannot have been given to another process), or a process :meth:`_is_mine`
        recognises (RabbitMQ's Erlang VM, a grandchild whose pid is read from a file)."""
        if pid is None or pid <= 0:
            return False
        if self.proc is not None and self.proc.pid == pid and self.proc.poll() is None:
            return True
        found = command_line(pid)
        return found is not None and self._is_mine(pid, *found)

    def _is_mine(self, pid: int, name: str, cmdline: list[str]) -> bool:
        """Whether process ``pid`` (named ``name``, running ``cmdline``), which is not our own
        child, is still this instance's broker. None is, here: a kind whose broker runs as a
        grandchild overrides it (RabbitMQ: its Erlang VM, recognised by the node name we gave
        it and its user)."""
        return False

    def signal(self, sig: int, pid: int | None = None) -> None:
        """Send ``sig`` to ``pid`` (default: :attr:`pid`), checked by :meth:`owns` first.
        ProcessLookupError if it does not run; NotOurProcess if it is not ours (nothing sent)."""
        pid = self.pid if pid is None else pid
        if pid is None:
            raise ProcessLookupError(f"{self.program} on port {self.port} is not running")
        if not self.owns(pid):
            if command_line(pid) is None:
                raise ProcessLookupError(f"no process {pid}")
            raise NotOurProcess(f"process {pid} is not {self.program} on port {self.port}: not signalled")
        os.kill(pid, sig)

    def pause(self) -> None:
        """SIGSTOP: it holds its sockets but answers nothing (to its peers, a partition)."""
        self.signal(signals.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.signal(signals.SIGCONT)


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
