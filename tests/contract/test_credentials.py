"""Credentials on real brokers: opening one never shows its password, whatever it holds, and
the brokers we start ourselves (single, Sentinel group, cluster, in a network namespace or not)
are closed to every other user of the machine: a random password, no guest, protected mode on,
an unprivileged user where we are root, nothing secret on a command line, in a log or in a
results file. And a private RabbitMQ node's dead letters are re-sent after a short confirm
timeout, not after RabbitMQ's default 3 minutes."""

from __future__ import annotations

import os
import secrets
import socket
import stat
import uuid
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from brokers import registry
from brokers.amqp.connection import connect as amqp_connect
from brokers.contract import AuthenticationFailed, BrokerError
from brokers.urls import redact
from tests.helpers.waiting import wait_for

ROOT_HERE = os.geteuid() == 0
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
PIECES = st.lists(PRINTABLE, min_size=1, max_size=3)


def _marked(parts: list[str]) -> tuple[str, list[str]]:
    """A password of arbitrary printable text with random markers between its parts: a marker
    in a message means a piece of the password leaked, not only the whole of it."""
    markers = [secrets.token_hex(5) for _ in parts]
    return "".join(p + m for p, m in zip(parts, markers, strict=True)), markers


def _open_and_fail(kind: str, url: str) -> BrokerError:
    """Open an adapter of ``kind`` on ``url``: it must fail with a BrokerError (nothing raw)."""
    with pytest.raises(BrokerError) as err:
        broker = registry.get(kind).open(url, queue=f"creds-{uuid.uuid4().hex[:8]}")
        broker.close()
    return err.value


def _said(error: BaseException) -> str:
    """Everything an error says: its text, its repr, and those of what it was raised from."""
    text = []
    while error is not None:
        text += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    return "\n".join(text)


def _assert_hidden(error: BaseException, password: str, markers: list[str]) -> None:
    said = _said(error)
    assert password not in said and quote(password, safe="") not in said
    assert not [m for m in markers if m in said], f"a piece of the password leaked: {said}"


# Finding 1: any password, on the shared brokers ------------------------------------------------

SHAPES = {"rabbitmq": "amqp://guest:{pw}@127.0.0.1:5672/%2F",
          # the shared Redis has no password: its default user takes any; a user that does not
          # exist is refused, which is the wrong-credentials case there
          "redis": "redis://bbnobody:{pw}@127.0.0.1:6379/0"}
FEW = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("kind", sorted(SHAPES))
@FEW
@given(parts=PIECES)
def test_a_wrong_password_of_any_characters_is_refused_without_showing_it(kind, parts):
    """Percent-encoded (how a URL carries it), any printable password: AuthenticationFailed,
    and no piece of it in what the error says."""
    password, markers = _marked(parts)
    error = _open_and_fail(kind, SHAPES[kind].format(pw=quote(password, safe="")))
    assert isinstance(error, AuthenticationFailed), _said(error)
    _assert_hidden(error, password, markers)


@FEW
@given(parts=PIECES)
@example(parts=["Zx", "/9kQ"])
@example(parts=["Zx", "#9kQ"])
@example(parts=["Zx", "?9kQ"])
def test_rabbitmq_with_an_unencoded_password_never_shows_it(parts):
    """Unencoded: '/', '?', '#', '@', '[' may stand in it; pika cannot read such a URL (it
    quoted the piece it stumbled on): a BrokerError, with no piece of the password."""
    password, markers = _marked(parts)
    _assert_hidden(_open_and_fail("rabbitmq", SHAPES["rabbitmq"].format(pw=password)), password, markers)


@FEW
@given(parts=PIECES)
@example(parts=["Zx", "/9kQ"])
def test_redis_with_an_unencoded_password_never_shows_it(parts):
    password, markers = _marked(parts)
    _assert_hidden(_open_and_fail("redis", f"redis://bbnobody:{password}@127.0.0.1:6379/0"), password, markers)


# Finding 2: what we start is closed to everyone else ---------------------------------------------

def _cmdlines() -> str:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        found.append(" ".join(proc.info["cmdline"] or []))
    return "\n".join(found)


def _files_hold(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _refused(host: str, port: int, *command: str) -> str:
    """Send ``command`` with no credentials over a plain socket (what any local user can do);
    Redis's reply line. Refused means ``-NOAUTH``: nothing was run."""
    wire = f"*{len(command)}\r\n" + "".join(f"${len(part)}\r\n{part}\r\n" for part in command)
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(wire.encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n")[0]


def _user_of(pid: int) -> str:
    return psutil.Process(pid).username()


@pytest.fixture
def private_redis():
    from brokers.bullmq_redis.server import RedisInstance

    with RedisInstance() as node:
        yield node


def test_a_private_redis_requires_its_password_and_runs_unprivileged(private_redis, tmp_path):
    node = private_redis
    assert node.password and node.password in node.url and node.password not in redact(node.url)
    for command in (("FLUSHALL",), ("REPLICAOF", "127.0.0.1", "1"), ("CONFIG", "GET", "requirepass")):
        assert _refused(node.host, node.port, *command).startswith("-NOAUTH"), command
    client = redis.Redis.from_url(node.url, socket_timeout=2)
    assert client.config_get("protected-mode") == {"protected-mode": "yes"}
    client.close()
    assert node.password not in _cmdlines(), "a password on a command line is seen by every user (ps)"
    conf = node.folder / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and stat.S_IMODE(node.folder.stat().st_mode) == 0o700
    if ROOT_HERE:
        assert _user_of(node.pid) == "redis"
    # a run against it: the password reaches no results file
    from benchmarks.harness.runner import run
    from benchmarks.harness.scenario import Scenario

    scenario = Scenario(broker="redis", profile="user_variables_update", mode="open", rate=40, duration_s=0.5,
                        warmup_s=0.1, producers=1, consumers=1, service_factor=0, drain_timeout_s=10)
    result, path = run(scenario, url=node.url, out=tmp_path)
    assert result["status"] == "ok", result["errors"]
    assert not _files_hold(tmp_path, node.password)


def test_a_private_rabbitmq_node_has_no_guest_and_a_short_dead_letter_confirm_timeout(private_brokers):
    """Its only user is random (guest is refused: it does not exist), it runs as the service
    user, its password is on no command line and in no log; and its rabbit application runs
    with dead_letter_worker_publisher_confirm_timeout at our short value (RabbitMQ 3.10's
    default is 180,000 ms: a quorum queue's dead letter awaiting a confirm waited 3 minutes)."""
    from brokers.amqp.server import DEAD_LETTER_CONFIRM_TIMEOUT_MS

    node = private_brokers.fresh("rabbitmq")
    assert "guest" not in node.url and node.password not in redact(node.url)
    amqp_connect(node.url, role="test").close()
    with pytest.raises(AuthenticationFailed):
        amqp_connect(f"amqp://guest:guest@{node.host}:{node.port}/%2F", role="test")
    users = node.ctl("list_users", "--formatter", "json").stdout
    assert node.username in users and '"guest"' not in users, users
    got = node.ctl("eval", "application:get_env(rabbit, dead_letter_worker_publisher_confirm_timeout).")
    assert got.stdout.strip() == f"{{ok,{DEAD_LETTER_CONFIRM_TIMEOUT_MS}}}", got.stdout + got.stderr
    assert DEAD_LETTER_CONFIRM_TIMEOUT_MS < 180_000
    assert node.password not in _cmdlines()
    assert not [f for f in _files_hold(node.folder, node.password) if not f.endswith("rabbitmq.conf")]
    assert stat.S_IMODE((node.folder / "rabbitmq.conf").stat().st_mode) == 0o600
    if ROOT_HERE:
        assert _user_of(node.pid) == "rabbitmq"
    # Finding 3's other half: its own VM (pid from the file) passes the one check before a signal
    assert node.owns(node.pid)
    status = psutil.Process(node.pid).status
    node.pause()  # a signal is delivered asynchronously: the state changes a moment later
    wait_for(lambda: status() == psutil.STATUS_STOPPED, 5, "the node's VM to be stopped")
    node.resume()
    wait_for(lambda: status() != psutil.STATUS_STOPPED, 5, "the node's VM to run again")
    vm = node.pid
    node.kill()
    wait_for(lambda: not psutil.pid_exists(vm) or psutil.Process(vm).status() == psutil.STATUS_ZOMBIE, 10,
             "the killed VM to be gone")


@pytest.fixture(scope="module")
def sentinel_group():
    from brokers.bullmq_redis.sentinel import RedisSentinelGroup

    group = RedisSentinelGroup()
    try:
        yield group.start()
    finally:
        group.cleanup()


def test_the_sentinel_group_refuses_anyone_without_its_passwords(sentinel_group):
    """In its namespace (as root) its /24 is routed from the host: every data node and Sentinel
    refuses a client without the password (FLUSHALL, REPLICAOF, SENTINEL commands), the URL
    carries both passwords and works, every process runs as the redis user."""
    from brokers.bullmq_redis.connection import connect

    group = sentinel_group
    assert group.namespace is not None or not ROOT_HERE, "as root it runs in a namespace of its own"
    data_commands = (("FLUSHALL",), ("REPLICAOF", "127.0.0.1", "1"), ("CONFIG", "SET", "masterauth", "x"))
    sentinel_commands = (("SENTINEL", "MASTERS"), ("SENTINEL", "REMOVE", group.service), ("SENTINEL", "RESET", "*"))
    # (each asks for AUTH only once the command exists there: a data node has no SENTINEL)
    for process in [*group.nodes, *group.watchers]:
        for command in sentinel_commands if process in group.watchers else data_commands:
            reply = _refused(process.host, process.port, *command)
            assert reply.startswith("-NOAUTH"), (process.port, command, reply)
        if ROOT_HERE:
            assert _user_of(process.pid) == "redis"
    for secret in (group.password, group.sentinel_password):
        assert secret in group.url and secret not in redact(group.url)
        assert secret not in str(group.describe()) and secret not in _cmdlines()
    client = connect(group.url, role="test")
    assert client.ping() and client.info("replication")["role"] == "master"
    client.close()


def test_the_rabbitmq_cluster_refuses_guest_on_every_node(private_brokers):
    cluster = private_brokers.cluster("rabbitmq")
    assert "guest" not in cluster.url and cluster.password not in redact(cluster.url)
    assert cluster.password not in str(cluster.describe())
    amqp_connect(cluster.url, role="test").close()
    for node in cluster.nodes:
        assert node.username == cluster.username
        with pytest.raises(AuthenticationFailed):
            amqp_connect(f"amqp://guest:guest@{node.host}:{node.port}/%2F", role="test")
        amqp_connect(f"amqp://{cluster.username}:{cluster.password}@{node.host}:{node.port}/%2F", role="test").close()
        if ROOT_HERE:
            assert _user_of(node.pid) == "rabbitmq"
