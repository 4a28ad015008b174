"""Credentials never leak, and nothing is killed or exposed that should not be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
