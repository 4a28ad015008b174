"""The live view's HTTP and event API, through Starlette's test client, on the shared brokers
(``--shared``: nothing here kills or reconfigures a broker; those actions must be refused)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from benchmarks.live.app import build_app
from benchmarks.live.lab import Lab
from tests.helpers.waiting import wait_for


@pytest.fixture(scope="module")
def lab():
    lab = Lab(shared=True).start()
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def client(lab):
    """The teacher's client: its token on every request (``X-Token``)."""
    with TestClient(build_app(lab, testing=True), headers={"X-Token": lab.token}) as client:
        yield client


def post(client: TestClient, lab: Lab, body: dict[str, Any], token: str | None = None):
    return client.post("/api/action", json=body, headers={"X-Token": lab.token if token is None else token})



def test_the_page_is_served_with_its_token_and_no_outside_address(client, lab):
    page = client.get("/")
    assert page.status_code == 200 and lab.token in page.text
    assert "http://" not in page.text and "https://" not in page.text, "everything from the package, no CDN"
    script = client.get("/static/live.js")
    assert script.status_code == 200 and "EventSource" in script.text and "https://" not in script.text
    assert '"in_doubt", "in doubt"' in script.text, "in doubt is shown beside refused"


def test_actions_need_the_token_and_a_known_name(client, lab):
    assert post(client, lab, {"action": "stop_load"}, token="wrong").status_code == 403
    assert post(client, lab, {"action": "stop_load"}, token=lab.read_token).status_code == 403
    unknown = post(client, lab, {"action": "rm -rf /"})
    assert unknown.status_code == 404 and "unknown action" in unknown.json()["error"]
    assert post(client, lab, {"action": "start_load", "rate": "fast"}).status_code == 400
    assert post(client, lab, {"action": "start_load", "rate": 10**6}).status_code == 400
    assert post(client, lab, {"action": "publish", "what": "anything"}).status_code == 400
    assert client.post("/api/action", content=b"not json", headers={"X-Token": lab.token}).status_code == 400


def test_one_action_at_a_time_and_only_for_loopback_names(client, lab):
    lab.acting.acquire()   # an action still running (a double click)
    try:
        assert post(client, lab, {"action": "stop_load"}).status_code == 409
    finally:
        lab.acting.release()
    assert client.get("/", headers={"host": "rebound.example"}).status_code == 400, "DNS rebinding"
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_a_shared_broker_is_never_killed_or_reconfigured(client, lab):
    refused = post(client, lab, {"action": "kill_broker", "side": "redis"})
    assert refused.status_code == 403 and "shared" in refused.json()["error"]
    again = post(client, lab, {"action": "set_profile", "side": "rabbitmq",
                               "profiles": {"rabbitmq": "quorum + confirms"}})
    assert again.status_code == 403
    assert post(client, lab, {"action": "drop_connections"}).status_code == 403, "others share its connections"


def test_reads_need_a_token_beyond_loopback_too(lab):
    with TestClient(build_app(lab, hosts=["*"]), base_url="http://192.0.2.7:8765") as outside:
        assert outside.get("/").status_code == 403
        assert outside.get("/api/state").status_code == 403
        assert outside.get(f"/api/state?token={lab.token}").status_code == 200
        assert outside.get(f"/api/state?token={lab.read_token}").status_code == 200


def test_load_runs_and_a_killed_worker_s_jobs_come_back_on_both_brokers(client, lab):
    started = post(client, lab, {"action": "start_load", "rate": 30, "profile": "heavy_workflow_execution",
                                 "consumers": 2, "concurrency": 4, "lock_s": 1, "time_scale": 0.1})
    assert started.status_code == 200, started.text
    assert set(started.json()["done"]) == {"redis", "rabbitmq"}

    def ran_on_both() -> bool:
        sides = client.get("/api/state").json()["sides"]
        return all(s["counts"]["ran"] > 30 and s["consumers_alive"] == 2 for s in sides.values())

    wait_for(ran_on_both, 30, "runs on both brokers")
    killed = post(client, lab, {"action": "kill_worker"})
    assert killed.status_code == 200 and all("kill -9 worker" in t for t in killed.json()["done"].values())

    def redelivered() -> dict[str, Any] | None:
        state = client.get("/api/state").json()
        counts = {k: s["counts"]["redelivered"] for k, s in state["sides"].items()}
        back = [m for m in state["markers"] if m["text"].startswith("jobs back")]
        return state if all(counts.values()) and {m["side"] for m in back} == set(counts) else None

    state = wait_for(redelivered, 30, "redelivered runs and a 'jobs back' marker on both brokers")
    texts = [m["text"] for m in state["markers"]]
    assert any(t.startswith("kill -9 worker") for t in texts)
    for side in state["sides"].values():
        assert side["counts"]["lost"] == 0
        assert side["counts"]["in_doubt"] == 0 and side["counts"]["refused"] == 0
        assert side["counts"]["accepted"] > side["counts"]["ran"] / 2, "acceptances keep being counted"
        assert side["history"] and side["queue"] and "error" not in side["queue"]


def test_special_jobs_leave_their_consequence_on_the_timeline(client, lab):
    assert post(client, lab, {"action": "publish", "what": "urgent"}).status_code == 200
    assert post(client, lab, {"action": "publish", "what": "delayed", "side": "redis"}).status_code == 200
    assert post(client, lab, {"action": "publish", "what": "poison", "side": "rabbitmq"}).status_code == 200
    assert post(client, lab, {"action": "publish", "what": "malformed", "side": "rabbitmq"}).status_code == 200

    def consequences() -> list[str] | None:
        texts = [f'{m["side"]}: {m["text"]}' for m in client.get("/api/state").json()["markers"]]
        wanted = ["redis: urgent job ran", "rabbitmq: urgent job ran", "redis: delayed job (5 s) ran",
                  "rabbitmq: poison job attempt 3 failed"]
        return texts if all(any(t.startswith(w) for t in texts) for w in wanted) else None

    try:
        wait_for(consequences, 30, "the urgent, delayed and poison jobs' markers")
    except AssertionError as exc:
        texts = [m["text"] for m in client.get("/api/state").json()["markers"]]
        raise AssertionError(f"{exc}; markers: {texts}") from exc
    dead = wait_for(lambda: client.get("/api/state").json()["sides"]["rabbitmq"]["queue"]["dead_letter"] >= 2, 15,
                    "the poison and the malformed job in RabbitMQ's dead-letter queue")
    assert dead
    keys = client.get("/api/job/redis").json()
    assert "id" in keys
    assert post(client, lab, {"action": "stop_load"}).status_code == 200


def test_events_stream_pushes_the_state(client):
    with client.stream("GET", "/api/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                state = json.loads(line[len("data: "):])
                assert set(state["sides"]) == {"redis", "rabbitmq"} and "markers" in state
                break
