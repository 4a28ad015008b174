"""The live page's safety, without brokers: a token on every request (the students' read-only
one cannot act and gets a page without buttons), anti-framing headers on every response, the
test client's Host name only in tests, tokens compared in constant time, and the URLs the
command prints."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from benchmarks.live import app as live_app
from benchmarks.live.app import build_app
from benchmarks.live.command import urls

from .fakes import fake_lab


@pytest.fixture(scope="module")
def lab():
    return fake_lab()


@pytest.fixture(scope="module")
def client(lab):
    with TestClient(build_app(lab, testing=True)) as client:
        yield client


def framing_refused(response) -> bool:
    csp = response.headers.get("content-security-policy", "")
    return "frame-ancestors 'none'" in csp and response.headers.get("x-frame-options") == "DENY"


@pytest.mark.parametrize("path", ["/", "/api/state", "/api/events", "/api/job/redis", "/static/live.js",
                                  "/static/live.css", "/nowhere"])
def test_every_request_needs_a_token(client, lab, path):
    assert client.get(path).status_code == 403
    assert client.get(path, params={"token": "wrong"}).status_code == 403
    assert client.get(path, params={"token": lab.token[:-1]}).status_code == 403


def test_the_teacher_s_link_serves_the_page_with_buttons_and_acts(client, lab):
    page = client.get("/", params={"token": lab.token})
    assert page.status_code == 200 and f'data-token="{lab.token}"' in page.text and 'data-role="teacher"' in page.text
    assert "<button" in page.text and lab.read_token not in page.text
    assert f"/static/live.js?token={lab.token}" in page.text, "the page's own files carry its token"
    assert client.get("/static/live.js", params={"token": lab.token}).status_code == 200
    assert client.get("/api/state", headers={"X-Token": lab.token}).status_code == 200
    done = client.post("/api/action", json={"action": "stop_load"}, headers={"X-Token": lab.token})
    assert done.status_code == 200, done.text
    assert client.post(f"/api/action?token={lab.token}", json={"action": "stop_load"}).status_code == 403, \
        "a POST's token only in a header: a cross-site form cannot set one"


def test_the_students_link_reads_but_cannot_act(client, lab):
    page = client.get("/", params={"token": lab.read_token})
    assert page.status_code == 200 and 'data-role="viewer"' in page.text
    assert "<button" not in page.text and lab.token not in page.text, "no buttons, and not the teacher's token"
    assert client.get("/api/state", params={"token": lab.read_token}).status_code == 200
    assert client.get("/static/live.js", params={"token": lab.read_token}).status_code == 200
    with client.stream("GET", "/api/events", params={"token": lab.read_token}) as stream:
        assert stream.status_code == 200
        assert next(line for line in stream.iter_lines() if line).startswith("data: ")
    before = {kind: len(side.calls) for kind, side in lab.sides.items()}
    refused = client.post("/api/action", json={"action": "stop_load"}, headers={"X-Token": lab.read_token})
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert {kind: len(side.calls) for kind, side in lab.sides.items()} == before, "nothing was done"


def test_every_response_refuses_to_be_framed(client, lab):
    answers = [client.get("/", params={"token": lab.token}), client.get("/"),
               client.get("/static/live.css", params={"token": lab.read_token}),
               client.get("/nowhere", params={"token": lab.token}),
               client.get("/", params={"token": lab.token}, headers={"host": "rebound.example"}),
               client.post("/api/action", content=b"{", headers={"X-Token": lab.token})]
    assert [a.status_code for a in answers] == [200, 403, 200, 404, 400, 400]
    assert all(framing_refused(a) for a in answers)
    assert all(a.headers.get("referrer-policy") == "no-referrer" for a in answers), "the token is in the URL"


def test_the_test_client_s_host_name_is_accepted_only_in_tests(lab):
    with TestClient(build_app(lab)) as production:
        assert production.get("/", params={"token": lab.token}).status_code == 400
    with TestClient(build_app(lab), base_url="http://127.0.0.1:8765") as loopback:
        assert loopback.get("/", params={"token": lab.token}).status_code == 200


def test_tokens_are_compared_in_constant_time(client, lab, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = live_app.secrets.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(live_app.secrets, "compare_digest", spy)
    assert client.get("/api/state", params={"token": lab.read_token}).status_code == 200
    assert {b for _, b in compared} == {lab.token.encode(), lab.read_token.encode()}, "both, every time"


def test_the_command_prints_the_teacher_s_and_the_students_urls(lab):
    teacher, students = urls("127.0.0.1", 8765, lab)
    assert teacher == f"http://127.0.0.1:8765/?token={lab.token}"
    assert students == f"http://127.0.0.1:8765/?token={lab.read_token}"
    assert urls("::1", 80, lab)[0].startswith("http://[::1]:80/?token=")
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", lab.token) and lab.token != lab.read_token
