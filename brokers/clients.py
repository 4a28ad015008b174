"""Clients: who speaks to a server in a run. A run is a (server, client) pair.

A server is a broker kind of :mod:`brokers.registry` (what runs, how it is found, started,
killed, and what it promises). A client is the library whose producer and worker a run uses
on it. Each kind's own adapter is a client (named after the kind: ``redis`` is our BullMQ-style
adapter on redis-py, ``rabbitmq`` our pika adapter); contenders are the libraries people really
use, run as processes of their own that speak the role protocol
(:mod:`benchmarks.contenders.protocol`): the official BullMQ on Node and amqplib on Node.

Adding a client: a :class:`Client` given to :func:`register`, from a module named in the
``BROKERBENCH_CLIENTS`` environment variable (comma-separated, each with a ``CLIENT``), or from
the entry point group ``brokerbench.clients``; no file here changes. A contender needs a role
program that passes tests/contenders/test_role_protocol.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Callable, Mapping

from . import registry

ENV_CLIENTS = "BROKERBENCH_CLIENTS"
ENTRY_POINTS = "brokerbench.clients"
NODE_FOLDER = Path(__file__).resolve().parents[1] / "benchmarks" / "contenders" / "node"
NODE_INSTALL = f"npm ci --prefix {NODE_FOLDER}"


class ClientUnavailable(RuntimeError):
    """A contender cannot run on this machine (its runtime or packages are missing); the message
    says what to install."""


@dataclass(frozen=True)
class Client:
    """One client library a run can use on its server.

    :param name: its name in the CLI and results files ("bullmq-node").
    :param label: how tables name it ("BullMQ 6 (Node)").
    :param server: the broker kind it speaks to (a :mod:`brokers.registry` kind).
    :param official: a library people really use (not ours).
    :param seed: the library the seed's own service would use (its bot runs on Node): the seed's
        claims about this client's server are answered with it when its runs are in the results.
    :param command: argv of its role program (the role protocol on stdin/stdout); empty for a
        kind's own adapter, whose roles run inside the harness's processes.
    :param cwd: the folder its command runs in.
    :param role_options: adapter options of a run (the durability level's, the fault scenario's)
        that the role takes, each under the name the role knows; the role refuses anything else.
    :param server_side: adapter options that the server or the queue's declaration already
        carries (the harness declares the queue with our adapter): dropped, not refused.
    :param needs: files that must exist before it runs (its installed packages), with
        ``install_hint`` saying how to get them.
    :param python_packages: Python distributions its role program imports (a Python contender).
    :param install_hint: what to run when it cannot start.
    :param notes: what a reader of its figures must know, in a sentence.
    :param queue_admin: for a client that keeps its jobs where the server's own adapter cannot
        see them (keys of its own): ``queue_admin(url, queue)`` gives an object with
        ``stats()`` (a :class:`~brokers.contract.QueueStats` of that queue), ``remove()`` and
        ``close()``. The harness counts the backlog with it (the closed loop's bound, the end of
        a run) and removes the queue with it. None: the client uses the server's layout
        (BullMQ's keys, the AMQP queue the harness declares), which the server's adapter counts.
    """

    name: str
    label: str
    server: str
    official: bool = False
    seed: bool = False
    command: tuple[str, ...] = ()
    cwd: Path | None = None
    role_options: Mapping[str, str] = None  # type: ignore[assignment]
    server_side: tuple[str, ...] = ()
    needs: tuple[Path, ...] = ()
    python_packages: tuple[str, ...] = ()
    install_hint: str = ""
    notes: str = ""
    queue_admin: Callable[[str, str], Any] | None = None

    def __post_init__(self) -> None:
        if self.role_options is None:
            object.__setattr__(self, "role_options", {})

    @property
    def external(self) -> bool:
        """Its roles are processes of another program (the role protocol), not our adapters."""
        return bool(self.command)

    def check_available(self) -> None:
        """A :class:`ClientUnavailable` saying what to install, if it cannot start here."""
        if not self.external:
            return
        program = self.command[0]
        if shutil.which(program) is None:
            raise ClientUnavailable(f"{self.label} needs {program!r}, which is not installed here: {self.install_hint}")
        missing = [str(p) for p in self.needs if not p.exists()]
        for package in self.python_packages:
            try:
                metadata.version(package)
            except metadata.PackageNotFoundError:
                missing.append(f"the Python package {package}")
        if missing:
            raise ClientUnavailable(f"{self.label} is not installed ({', '.join(missing)} missing): "
                                    f"{self.install_hint}")

    def options_for_role(self, broker_options: Mapping[str, Any]) -> dict[str, Any]:
        """The run's adapter options as the role takes them; a ValueError naming any option this
        client cannot honour (a level it cannot give, say: the run must not pretend it did)."""
        out: dict[str, Any] = {}
        refused = []
        for key, value in broker_options.items():
            if key in self.role_options:
                out[self.role_options[key]] = value
            elif key not in self.server_side:
                refused.append(key)
        if refused:
            raise ValueError(f"{self.label} cannot run with {', '.join(sorted(refused))} (it takes "
                             f"{', '.join(sorted(self.role_options)) or 'no option'})")
        return out


HARNESS_OPTIONS = ("reconnect_for_s", "max_job_bytes", "queue")  # our adapters' own; a role has none
# What a BullMQ client takes of a run's options (recovery settings), and what an AMQP client
# takes (durability settings; queue arguments are declared by our adapter, server side).
BULLMQ_ROLE_OPTIONS = {k: k for k in ("lock_duration_ms", "stalled_interval_ms", "max_stalled_count")}
AMQP_ROLE_OPTIONS = {k: k for k in ("persistent", "confirms", "reconnect_for_s")}
AMQP_SERVER_SIDE = (*HARNESS_OPTIONS, "queue_type", "max_priority", "max_length")


def own_client(kind: str) -> Client:
    """A kind's own adapter as a client (named after the kind)."""
    driver = registry.get(kind)
    return Client(name=kind, label=f"ours ({driver.label})", server=kind)


_contenders: dict[str, Client] = {}
_loaded = False
_lock = threading.RLock()


def _node_clients() -> tuple[Client, ...]:
    node_needs = (NODE_FOLDER / "node_modules" / "bullmq", NODE_FOLDER / "node_modules" / "amqplib")
    hint = f"install Node.js 18 or later, then the pinned packages: brokerbench clients install ({NODE_INSTALL})"
    return (
        Client(name="bullmq-node", label="BullMQ (Node)", server="redis", official=True, seed=True,
               command=("node", "role.mjs", "bullmq"), cwd=NODE_FOLDER,
               role_options=BULLMQ_ROLE_OPTIONS,
               server_side=HARNESS_OPTIONS, needs=node_needs, install_hint=hint,
               notes="the official BullMQ with ioredis, one add per call (addBulk for a batch), BullMQ's lock "
                     "and stalled-check defaults"),
        Client(name="amqplib-node", label="amqplib (Node)", server="rabbitmq", official=True, seed=True,
               command=("node", "role.mjs", "amqplib"), cwd=NODE_FOLDER,
               role_options=AMQP_ROLE_OPTIONS, server_side=AMQP_SERVER_SIDE,
               needs=node_needs, install_hint=hint,
               notes="amqplib with TCP_NODELAY on (its default leaves Nagle on: ~40 ms tails), a confirm "
                     "channel whose confirms each call awaits, prefetch, one ack per message; amqplib has no "
                     "reconnection, so the role has the plain one an application writes (again every 0.5 s "
                     "for up to reconnect_for_s)"),
    )


def _python_clients() -> tuple[Client, ...]:
    """The Python contenders: role programs in benchmarks/contenders/python, run with this
    interpreter (their libraries come with the ``bench`` extra)."""
    root = Path(__file__).resolve().parents[1]
    hint = "install brokerbench with its bench extra: pip install -e '.[bench]' (or .[all])"
    return (
        Client(name="bullmq-python", label="BullMQ (Python)", server="redis", official=True,
               command=(sys.executable, "-m", "benchmarks.contenders.python.bullmq_role"), cwd=root,
               role_options=BULLMQ_ROLE_OPTIONS,
               server_side=HARNESS_OPTIONS, python_packages=("bullmq",), install_hint=hint,
               notes="the official BullMQ for Python (asyncio), one add per call (addBulk for a batch), "
                     "BullMQ's lock and stalled-check defaults"),
        Client(name="pika-plain", label="pika (plain loop)", server="rabbitmq", official=True,
               command=(sys.executable, "-m", "benchmarks.contenders.python.pika_role"), cwd=root,
               role_options=AMQP_ROLE_OPTIONS, server_side=AMQP_SERVER_SIDE,
               python_packages=("pika",), install_hint=hint,
               notes="the loop most pika users write: each publish waits for its confirm, the handler runs "
                     "inline in the delivery callback, one ack per message; the plain reconnect loop"),
    )


def _load() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        for client in (*_node_clients(), *_python_clients()):
            register(client)
        for module in (m.strip() for m in os.environ.get(ENV_CLIENTS, "").split(",") if m.strip()):
            register(import_module(module).CLIENT)
        for entry in metadata.entry_points(group=ENTRY_POINTS):
            register(entry.load())


def register(client: Client) -> Client:
    """Add a client (replacing one of the same name). Returns it."""
    with _lock:
        _contenders[client.name] = client
    return client


def unregister(name: str) -> None:
    _load()
    with _lock:
        _contenders.pop(name, None)


def get(name: str) -> Client:
    """The client ``name``: a contender, or a kind's own adapter; a ValueError listing them."""
    _load()
    if name in _contenders:
        return _contenders[name]
    if name in registry.kinds():
        return own_client(name)
    raise ValueError(f"unknown client {name!r}; known: {', '.join(names())}")


def contenders() -> list[Client]:
    """Every registered contender, in registration order."""
    _load()
    return list(_contenders.values())


def names() -> list[str]:
    """Every client's name: each kind's own adapter, then the contenders."""
    return registry.kinds() + [c.name for c in contenders()]


def for_server(kind: str) -> list[Client]:
    """The clients that speak to server ``kind``: its own adapter first."""
    return [own_client(kind)] + [c for c in contenders() if c.server == kind]


def seed_client(kind: str) -> Client | None:
    """The client the seed's own service would use on server ``kind``, if one is registered."""
    return next((c for c in contenders() if c.server == kind and c.seed), None)
