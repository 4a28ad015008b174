"""What a RabbitMQ node itself counts in a queue: the part AMQP 0-9-1 cannot tell a client.

What AMQP tells (RabbitMQ 3.10.8, read from its code): a passive ``queue.declare`` answers with
``message_count``, the messages *ready* for delivery, and ``consumer_count``. For a classic
queue that excludes unacknowledged messages; for a quorum queue it is ``rabbit_fifo``'s
``messages_ready`` (``rabbit_quorum_queue:stat/1`` -> ``rabbit_fifo:query_stat/1``), which
excludes both the messages checked out to consumers and those the queue holds for
**at-least-once dead-lettering**: a message that expired (our delay levels) or was rejected
moves to the queue's ``discards`` and stays there, then checked out to the queue's dead-letter
worker, until its target queue confirms it. A full target (a bounded lane, reject-publish)
refuses it, and the worker offers it again only after ``dead_letter_worker_publisher_confirm_
timeout`` (180 s by default). Meanwhile no AMQP reply counts it anywhere.

What the node counts: ``rabbit_fifo:overview/1`` of a quorum queue gives ``num_ready_messages``,
``num_checked_out`` (unacked) and ``num_discarded`` + ``num_discard_checked_out`` (held for
dead-lettering; the same sum as the quorum queue info item ``messages_dlx``, which the
management API shows). A classic queue's own process gives ``messages_ready`` and
``messages_unacknowledged``. ``rabbitmqctl list_queues`` of 3.10.8 refuses the ``messages_dlx``
column ("Info key(s) messages_dlx are not supported"), and its ``messages`` column for a quorum
queue comes from metrics updated every few seconds, so the counts are read with one
``rabbitmqctl eval`` instead, each queue asked directly (live, one queue after the other: not
one snapshot of all of them).

Cost: every reading starts an Erlang VM for rabbitmqctl (about 0.5 s on an idle machine,
seconds on a loaded one). Never read it in a tight loop. It needs the node's name and the
Erlang cookie: a private node of ours (its ``ctl``), or a node on this host found from the
URL's port (below) when this process may run ``rabbitmqctl`` as the node's service user.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import unquote, urlsplit

from ..contract import BrokerError

Ctl = Callable[[Sequence[str], float], str]
"""Runs ``rabbitmqctl <args>`` against one node within a timeout (s); returns its output, or
raises :class:`NodeUnreadable`."""

READ_TIMEOUT_S = 20.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class NodeUnreadable(BrokerError):
    """The node could not be asked, or could not count a queue (a quorum queue without a leader)."""


@dataclass(frozen=True)
class QueueCounts:
    """One queue, as its node counts it.

    ready           waiting for a consumer (what AMQP's ``message_count`` says)
    unacked         delivered to a consumer and not yet acknowledged
    dead_lettering  held for at-least-once dead-lettering (quorum queues): expired or rejected,
                    not yet confirmed by the target (``messages_dlx``); always 0 for a classic
                    queue, whose dead-lettering is at-most-once
    """

    ready: int
    unacked: int
    dead_lettering: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.unacked + self.dead_lettering


def _erlang_binary(text: str) -> str:
    return '<<"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"/utf8>>'


def count_expression(vhost: str, names: Sequence[str]) -> str:
    """The Erlang expression ``rabbitmqctl eval`` runs: ``[{Index, {Ready, Unacked, DeadLettering}
    | missing | unknown}]``, indices from 1 in the order of ``names``."""
    listed = ", ".join(_erlang_binary(n) for n in names)
    return (
        f"VHost = {_erlang_binary(vhost)}, Names = [{listed}], "
        "Count = fun(Name) -> "
        "case rabbit_amqqueue:lookup(rabbit_misc:r(VHost, queue, Name)) of "
        "{ok, Q} -> case amqqueue:get_type(Q) of "
        "rabbit_quorum_queue -> "
        "case catch ra:local_query(amqqueue:get_pid(Q), fun rabbit_fifo:overview/1) of "
        "{ok, {_, O}, _} when is_map(O) -> {maps:get(num_ready_messages, O, 0), "
        "maps:get(num_checked_out, O, 0), "
        "maps:get(num_discarded, O, 0) + maps:get(num_discard_checked_out, O, 0)}; "
        "_ -> unknown end; "
        "_ -> case catch rabbit_amqqueue:info(Q, [messages_ready, messages_unacknowledged]) of "
        "[{messages_ready, R}, {messages_unacknowledged, U}] when is_integer(R), is_integer(U) -> {R, U, 0}; "
        "_ -> unknown end "
        "end; "
        "_ -> missing end end, "
        "[{I, Count(N)} || {I, N} <- lists:zip(lists:seq(1, length(Names)), Names)]."
    )


_ENTRY = re.compile(r"\{\s*(\d+)\s*,\s*(?:\{\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\}|(missing|unknown))\s*\}")


def parse_counts(output: str, names: Sequence[str]) -> dict[str, QueueCounts | None]:
    """``names`` -> counts (None: the queue does not exist). NodeUnreadable if the node could not
    count one of them or the output is not what :func:`count_expression` returns."""
    found: dict[str, QueueCounts | None] = {}
    for match in _ENTRY.finditer(output):
        index = int(match.group(1)) - 1
        if not 0 <= index < len(names):
            continue
        if match.group(5) == "unknown":
            raise NodeUnreadable(f"the node could not count queue {names[index]!r} (no leader?)")
        found[names[index]] = None if match.group(5) else QueueCounts(*(int(match.group(g)) for g in (2, 3, 4)))
    if len(found) != len(names):
        raise NodeUnreadable(f"unexpected answer from rabbitmqctl eval: {output[:200]!r}")
    return found


def read_counts(ctl: Ctl, vhost: str, names: Sequence[str],
                timeout: float = READ_TIMEOUT_S) -> dict[str, QueueCounts | None]:
    """Every queue of ``names`` in ``vhost``, counted by the node (one rabbitmqctl call)."""
    if not names:
        return {}
    return parse_counts(ctl(["eval", count_expression(vhost, names)], timeout), names)


def vhost_of(url: str) -> str:
    """The vhost an AMQP URL names ("/" when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# --------------------------------------------------------------------------- finding the node


def instance_ctl(instance: Any) -> Ctl:
    """rabbitmqctl of a private node of ours (anything with ``ctl(*args, timeout=)`` returning a
    CompletedProcess, such as :class:`brokers.amqp.server.RabbitMQInstance`)."""
    def run(args: Sequence[str], timeout: float) -> str:
        try:
            done = instance.ctl(*args, timeout=timeout)
        except (subprocess.TimeoutExpired, OSError, RuntimeError) as exc:
            raise NodeUnreadable(f"rabbitmqctl did not answer: {exc}") from None
        if done.returncode != 0:
            raise NodeUnreadable(f"rabbitmqctl failed: {(done.stderr or done.stdout).strip()[:300]}")
        return done.stdout
    return run


def node_ctl(node: str) -> Ctl:
    """rabbitmqctl (Debian's wrapper runs it as the service user, whose cookie it needs) against
    the node named ``node`` on this host."""
    def run(args: Sequence[str], timeout: float) -> str:
        ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        try:
            done = subprocess.run([ctl, "-n", node, "-q", *args], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except (subprocess.TimeoutExpired, OSError) as exc:
            raise NodeUnreadable(f"rabbitmqctl -n {node} did not answer: {exc}") from None
        if done.returncode != 0:
            raise NodeUnreadable(f"rabbitmqctl -n {node} failed: {(done.stderr or done.stdout).strip()[:300]}")
        return done.stdout
    return run


def _listening_ports(pid: int) -> set[int]:
    import psutil

    try:
        return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr}
    except (psutil.Error, OSError):
        return set()


def _epmd_names() -> dict[str, int]:
    """Node name (without host) -> distribution port, as this host's epmd lists them."""
    epmd = shutil.which("epmd")
    if epmd is None:
        return {}
    try:
        out = subprocess.run([epmd, "-names"], capture_output=True, text=True, timeout=5).stdout
    except (subprocess.TimeoutExpired, OSError):
        return {}
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^name (\S+) at port (\d+)", out, re.MULTILINE)}


def find_ctl(url: str) -> Ctl | None:
    """rabbitmqctl for the node behind ``url`` (its first node), or None when it cannot be found:

    1. a private node this process started (``brokers.instances``) on that host and port;
    2. a node on this host: the Erlang VM listening on the URL's port, named by the epmd entry
       whose distribution port that VM also listens on; ``name@localhost`` (how our private
       nodes are named) or ``name@<this host>`` (RabbitMQ's default), whichever answers.
    Never a remote node: its cookie is not ours to use."""
    from ..instances import WEAKREFS
    from .connection import node_urls
    from .driver import server_pid

    first = node_urls(url)[0]
    parts = urlsplit(first)
    port = parts.port or 5672
    for instance in list(WEAKREFS):
        if hasattr(instance, "ctl") and getattr(instance, "port", None) == port \
                and (getattr(instance, "host", None) == parts.hostname
                     or parts.hostname in LOCAL_HOSTS and getattr(instance, "host", None) in LOCAL_HOSTS):
            return instance_ctl(instance)
    if parts.hostname not in LOCAL_HOSTS:
        return None
    pid = server_pid(first)
    if pid is None:
        return None
    ports = _listening_ports(pid)
    names = [name for name, dist_port in _epmd_names().items() if dist_port in ports]
    if len(names) != 1:
        return None
    for host in ("localhost", socket.gethostname().split(".")[0]):
        ctl = node_ctl(f"{names[0]}@{host}")
        try:
            ctl(["eval", "ok."], READ_TIMEOUT_S)
            return ctl
        except NodeUnreadable:
            continue
    return None
