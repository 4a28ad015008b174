"""Credentials never leak, and nothing is killed or exposed that should not be."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers import registry
from brokers.urls import redact

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url,hidden", [
    ("amqp://guest:secret@host:5672/%2F", "secret"),
    ("redis://:pw-123@127.0.0.1:6379/0", "pw-123"),
    ("rediss://h:1/0?password=abc123&ssl_cert_reqs=none", "abc123"),
    ("redis+sentinel://:s1@a:1,b:2/mymaster?sentinel_password=s2", "s2"),
    ("amqp://u:topsecret@h:99999/x", "topsecret"),  # a bad port: redact must not raise on it
    ("redis://u@h/0?token=tok-9", "tok-9"),
])
def test_redaction_hides_every_secret_and_never_raises(url, hidden):
    text = redact(url)
    assert hidden not in text and "***" in text


def test_redaction_of_something_unparsable_says_so():
    assert redact("http://[::1") == "<unparsable url>"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


class FakeContainer:
    made: list["FakeContainer"] = []

    def __init__(self, image, **kwargs):
        self.image, self.kwargs = image, kwargs
        self.ports = {"1234": None}
        self.started = False
        FakeContainer.made.append(self)

    def start(self):
        self.started = True
        return self

    def stop(self):
        pass

    def get_exposed_port(self, port):
        return 40000


@pytest.mark.parametrize("kind,module,cls", [("redis", "testcontainers.redis", "RedisContainer"),
                                             ("rabbitmq", "testcontainers.rabbitmq", "RabbitMqContainer")])
def test_the_docker_fallback_listens_on_loopback_with_random_credentials(monkeypatch, kind, module, cls):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), cls, FakeContainer)
    FakeContainer.made.clear()
    driver = registry.get(kind)
    urls = [driver.start_container(driver.docker_image)[0] for _ in range(2)]
    for container in FakeContainer.made:
        assert container.started and all(v == ("127.0.0.1", None) for v in container.ports.values())
        assert container.kwargs.get("password") and container.kwargs["password"] not in ("guest", "")
    assert urls[0] != urls[1], "a new password each time"
    assert all("@127.0.0.1:40000" in u and "guest" not in u for u in urls)


def test_a_private_rabbitmq_kill_touches_only_its_own_vm(tmp_path):
    """The pid file sits in a folder the rabbitmq user owns: a pid written there that is not
    this node's Erlang VM is never SIGKILLed."""
    server = registry.get("rabbitmq").server_class()
    node = server(folder=tmp_path)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "node.pid").write_text(str(bystander.pid))
        node.kill()
        assert bystander.poll() is None, "a process that is not the node's VM was not killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_drain_children_get_the_broker_url_from_their_environment_not_their_command_line(monkeypatch):
    from benchmarks.commands import drain

    seen = {}

    def fake_run(args, **kwargs):
        seen["args"], seen["env"] = args, kwargs.get("env") or {}
        return subprocess.CompletedProcess(args, 0, stdout='{"contender": "x"}\n', stderr="")

    monkeypatch.setattr(drain, "fill", lambda *a: None)
    monkeypatch.setattr(drain.subprocess, "run", fake_run)
    url = "amqp://user:s3cret@127.0.0.1:5672/%2F"
    drain.run_one("amqp-ours", url, 10, 1, 1)
    assert not any("s3cret" in str(a) for a in seen["args"]), "not on the command line (ps shows it)"
    assert seen["env"][drain.CHILD_URL] == url


# Finding 1: redaction that does not trust a URL parser to find the password ------------------

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\t\n\r\x0b\x0c"),
                    min_size=1, max_size=24)
SHAPES = ("redis://:{pw}@127.0.0.1:6379/0", "redis://user:{pw}@127.0.0.1:6379/0?socket_timeout=3",
          "amqp://guest:{pw}@127.0.0.1:5672/%2F", "amqp://u:{pw}@10.0.0.1:1,10.0.0.2:2,10.0.0.3:3/%2F",
          "redis+sentinel://:{pw}@a:1,b:2/svc?sentinel_password={q}", "rediss://h:6380/0?password={q}&db=2",
          "unix://:{pw}@/run/redis.sock?db=1", "redis://h/0?x=1&token={q}#frag")
# In a query, a raw '&', '=' or '#' ends the value by the URL's own grammar: a value holds them
# percent-encoded; every other printable character may stand there as it is (RFC 3986 allows
# '@', ':', '/', '?' in a query, so they are left raw here).
QUERY_RAW = "@:/?!$'()*+,;"


def _marked(draw_parts: list[str]) -> tuple[str, list[str]]:
    """A password of arbitrary printable text with random markers between its parts: a marker
    found in an output means a piece of the password leaked, not only the whole of it."""
    markers = [secrets.token_hex(5) for _ in draw_parts]
    return "".join(part + marker for part, marker in zip(draw_parts, markers, strict=True)), markers


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(parts=st.lists(PRINTABLE, min_size=1, max_size=3), shape=st.sampled_from(SHAPES),
       encoded=st.booleans())
def test_redact_hides_any_printable_password_and_every_piece_of_it(parts, shape, encoded):
    password, markers = _marked(parts)
    url = shape.format(pw=quote(password, safe="") if encoded else password,
                       q=quote(password, safe="" if encoded else QUERY_RAW))
    text = redact(url)
    assert password not in text and quote(password, safe="") not in text and quote(password, safe=QUERY_RAW) not in text
    assert not [m for m in markers if m in text], f"a piece of the password leaked: {text!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=80))
def test_redact_never_raises(text):
    assert isinstance(redact(text), str)
    assert isinstance(redact(text.encode("utf-8", "surrogatepass")), str)


@pytest.mark.parametrize("url", ["redis://:Zx/9kQ@127.0.0.1:6379/0", "redis://:Zx#9kQ@127.0.0.1:6379/0",
                                 "redis://:Zx?9kQ@127.0.0.1:6379/0", "amqp://guest:Zx/9k?Q#r@127.0.0.1:5672/%2F"])
def test_the_probed_urls_are_redacted_whole(url):
    """The issue's probe: urlsplit ends the netloc at the '/', so the old redact() printed it all."""
    text = redact(url)
    assert "Zx" not in text and "9k" not in text and text.endswith("@127.0.0.1:" + url.rsplit(":", 1)[1])


@pytest.mark.parametrize("url", ["amqp://guest:Zx/9kQ@127.0.0.1:5672/%2F", "amqp://guest:Zx#9kQ@127.0.0.1:5672/%2F",
                                 "amqp://guest:Zx?9kQ@127.0.0.1:5672/%2F", "amqp://guest:Zx[9kQ@127.0.0.1:5672/%2F",
                                 "amqp://guest:Zx]9kQ@127.0.0.1:5672/%2F",
                                 "amqp://g:Zx9kQ@127.0.0.1:5672/%2F?heartbeat=abc"])
def test_a_url_pika_cannot_read_is_a_broker_error_without_the_secret(url):
    """pika.URLParameters raised a raw ValueError quoting the piece it could not read ('Zx', a
    port): now a BrokerError, before any connection is tried, that shows the URL redacted."""
    from brokers.amqp.connection import connect, parameters
    from brokers.contract import BrokerError

    for attempt in (lambda: parameters(url, role="t"), lambda: connect(url, role="t", connect_timeout=0.5)):
        with pytest.raises(BrokerError) as err:
            attempt()
        assert "Zx" not in str(err.value) and "9kQ" not in str(err.value) and "***" in str(err.value)
        assert err.value.__context__ is None and err.value.__cause__ is None, "the parser's words are not kept"


# Finding 3: a pid is checked before every signal ----------------------------------------------

@pytest.fixture
def bystander():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _state(pid: int) -> str:
    import psutil

    return psutil.Process(pid).status()


def test_pause_and_resume_never_signal_a_pid_that_is_not_a_broker_of_ours(tmp_path, bystander):
    """SIGSTOP/SIGCONT went to whatever pid a node's pid file named (a file the broker's user
    can write). Now the pid must be one of our instances' processes: a bystander is left alone,
    by pid and through the node alike."""
    from brokers import clusters
    from brokers.instances import NotOurProcess

    node = registry.get("rabbitmq").server_class()(folder=tmp_path)
    (tmp_path / "node.pid").write_text(str(bystander.pid))
    assert node.pid == bystander.pid and not node.owns(bystander.pid)
    for attempt in (lambda: clusters.pause(node.pid), lambda: clusters.pause(node), lambda: node.pause(),
                    lambda: node.signal(signal.SIGKILL)):
        with pytest.raises(NotOurProcess):
            attempt()
    time.sleep(0.1)
    assert _state(bystander.pid) != "stopped" and bystander.poll() is None
    with pytest.raises(ProcessLookupError):
        clusters.pause(2**22 + 12345)  # no such process
    clusters.resume_quietly(bystander.pid)  # clean-up paths swallow it, and send nothing either


def test_a_child_we_started_is_ours_until_it_is_reaped(tmp_path):
    """The other half of the one check: a process we started ourselves (our Popen child, not
    yet reaped, so its pid is its own) may be paused and resumed."""
    from brokers import clusters
    from brokers.instances import LocalInstance

    instance = LocalInstance(folder=tmp_path)
    instance.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert instance.owns(instance.proc.pid)
        clusters.pause(instance.proc.pid)
        deadline = time.monotonic() + 5
        while _state(instance.proc.pid) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(instance.proc.pid) == "stopped"
        clusters.resume(instance.proc.pid)
    finally:
        instance.proc.kill()
        instance.proc.wait()
    assert not instance.owns(instance.proc.pid), "reaped: its pid may now be anyone's"


# Finding 4: the CLI's SIGTERM handler -----------------------------------------------------------

def test_cli_main_called_in_process_restores_the_sigterm_handler_it_found():
    from benchmarks.commands import cli

    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["--help"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_cli_sigterm_handler_interrupts_once_then_ignores():
    from benchmarks.commands import cli

    handler = cli._Terminated()
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGTERM, None)
    handler(signal.SIGTERM, None)  # a second one while cleaning up: ignored
    assert handler.received == 2
