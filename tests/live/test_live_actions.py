"""POST /api/action answers every bad request with a clear 400 naming what is wrong (never a 500
or a traceback), and a broker's failure with its own error kept, without any broker."""

from __future__ import annotations

import subprocess

import pytest
from starlette.testclient import TestClient

from benchmarks.live.app import build_app
from benchmarks.live.lab import ActionFailed

from .fakes import fake_lab


@pytest.fixture
def lab():
    return fake_lab()


@pytest.fixture
def client(lab):
    with TestClient(build_app(lab, testing=True), raise_server_exceptions=True) as client:
        yield client


def post(client, lab, body=None, content=None):
    return client.post("/api/action", json=body, content=content, headers={"X-Token": lab.token})


def test_a_deeply_nested_body_is_a_400_not_a_traceback(client, lab):
    deep = post(client, lab, content=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code in (400, 413) and "error" in deep.json()
    nested = post(client, lab, content=b'{"action": "stop_load", "side": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"]
    assert post(client, lab, content=b"\xff\xfe not utf-8").status_code == 400
    assert post(client, lab, content=b" " * 70_000).status_code == 413


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "stop_load", "side": []}, "side"),
    ({"action": "stop_load", "side": {"a": 1}}, "side"),
    ({"action": "stop_load", "side": "mongodb"}, "side"),
    ({"action": "start_load", "rate": "fast"}, "rate"),
    ({"action": "start_load", "rate": 10**6}, "rate"),
    ({"action": "start_load", "rate": 10**400}, "rate"),
    ({"action": "start_load", "rate": True}, "rate"),
    ({"action": "start_load", "rate": None}, "rate"),
    ({"action": "start_load", "rate": "NaN"}, "rate"),
    ({"action": "start_load", "rate": "inf"}, "rate"),
    ({"action": "start_load", "consumers": 2.5}, "consumers"),
    ({"action": "start_load", "consumers": 0}, "consumers"),
    ({"action": "start_load", "concurrency": "four"}, "concurrency"),
    ({"action": "start_load", "concurrency": 65}, "concurrency"),
    ({"action": "start_load", "lock_s": 0.1}, "lock_s"),
    ({"action": "start_load", "lock_s": [5]}, "lock_s"),
    ({"action": "start_load", "time_scale": 2}, "time_scale"),
    ({"action": "start_load", "profile": ["mix"]}, "profile"),
    ({"action": "start_load", "profile": "everything"}, "profile"),
    ({"action": "start_load", "rate": 10, "speed": 3}, "speed"),
    ({"action": "publish"}, "what"),
    ({"action": "publish", "what": ["poison"]}, "what"),
    ({"action": "publish", "what": "anything"}, "what"),
    ({"action": "kill_worker", "what": "poison"}, "what"),
    ({"action": "set_profile"}, "profiles"),
    ({"action": "set_profile", "profiles": "no persistence"}, "profiles"),
    ({"action": "set_profile", "profiles": {"redis": ["no persistence"]}, "side": "redis"}, "profiles.redis"),
    ({"action": "set_profile", "profiles": {"redis": "fast"}, "side": "redis"}, "profiles.redis"),
    ({"action": "set_profile", "profiles": {"kafka": "x"}, "side": "redis"}, "kafka"),
    ({"action": "set_profile", "profiles": {"redis": "no persistence"}}, "rabbitmq"),
])
def test_every_parameter_is_checked_with_a_400_naming_it(client, lab, body, field):
    answer = post(client, lab, body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"], answer.json()
    assert not any(side.calls for side in lab.sides.values()), "nothing done for a bad request"


def test_good_parameters_reach_the_brokers_typed(client, lab):
    answer = post(client, lab, {"action": "start_load", "rate": "250", "consumers": "3", "concurrency": 8.0,
                                "lock_s": 1, "time_scale": "0.5", "profile": "mix", "side": "redis"})
    assert answer.status_code == 200, answer.text
    (name, settings), = lab.sides["redis"].calls
    assert (settings.rate, settings.consumers, settings.concurrency, settings.lock_s) == (250.0, 3, 8, 1.0)
    assert not lab.sides["rabbitmq"].calls
    answer = post(client, lab, {"action": "set_profile", "profiles": {"redis": "no persistence",
                                                                      "rabbitmq": "transient messages"}})
    assert answer.status_code == 200 and set(answer.json()["done"]) == {"redis", "rabbitmq"}
    unknown = post(client, lab, {"action": "rm -rf /"})
    assert unknown.status_code == 404 and "unknown action" in unknown.json()["error"]
    assert post(client, lab, {"action": ["stop_load"]}).status_code == 400


def test_a_failure_on_the_second_broker_keeps_its_own_error_and_says_what_was_done(client, lab):
    lab.sides["rabbitmq"].fail["drop_connections"] = lambda: subprocess.TimeoutExpired(["rabbitmqctl"], 10)
    answer = post(client, lab, {"action": "drop_connections"})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error.startswith("rabbitmq: TimeoutExpired:") and "timed out after 10 seconds" in error
    assert "already done: redis: drop_connections done" in error
    with pytest.raises(ActionFailed) as caught:
        lab.act("drop_connections", {"side": "rabbitmq"})
    assert isinstance(caught.value.__cause__, subprocess.TimeoutExpired) and caught.value.status == 502


def test_a_refusal_keeps_its_status(client, lab):
    lab.sides["redis"].fail["kill_broker"] = lambda: PermissionError("the broker is shared (--shared)")
    lab.sides["redis"].fail["kill_worker"] = lambda: ValueError("no worker is running: start the load first")
    refused = post(client, lab, {"action": "kill_broker", "side": "redis"})
    assert refused.status_code == 403 and refused.json()["error"] == "redis: the broker is shared (--shared)"
    assert post(client, lab, {"action": "kill_worker", "side": "redis"}).status_code == 400
    lab.acting.acquire()   # an action still running (a double click)
    try:
        assert post(client, lab, {"action": "stop_load"}).status_code == 409
    finally:
        lab.acting.release()
