"""Conformance of every contender's role program to the role protocol
(benchmarks/contenders/protocol.py), spoken to over its pipes as the harness speaks to it, on the
shared brokers: each line it writes is a valid message; it answers every publish with the fates
of exactly its seqs; a worker reports every run (trace echoed, before the settlement) and ends
with counts that agree with those runs; it refuses what it does not know, by name."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from benchmarks.contenders import protocol
from benchmarks.contenders.bridge import ContenderBroker, RoleFailed, RoleProcess
from brokers import clients


def _setup(client: clients.Client, endpoints, role: str, queue: str, **extra):
    """A started role program of ``client`` and its ready message."""
    kind = client.server
    ours = ContenderBroker(client, kind, endpoints[kind].url, queue, {}, role, 0)  # declares the queue
    process = RoleProcess(client)
    process.send({"type": "setup", "protocol": 1, "role": role, "index": 0, "url": endpoints[kind].url,
                  "queue": queue, "options": ours.options, **extra})
    ready = process.receive(timeout=30)
    return process, ready


def _until(process: RoleProcess, kind: str, timeout: float = 20.0) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = process.receive(timeout=0.2)
        if message is None:
            continue
        got.append(message)
        if message["type"] == kind:
            return got
    raise AssertionError(f"no {kind} within {timeout} s; got {got}")


def _cleanup(client: clients.Client, endpoints, queue: str) -> None:
    from brokers import registry

    broker = registry.get(client.server).open(endpoints[client.server].url, queue=queue)
    try:
        broker.remove()
    finally:
        broker.close()


def test_a_producer_answers_every_seq_of_every_publish_once(role_client, endpoints):
    queue = f"bb-proto-{uuid.uuid4().hex[:8]}"
    process, ready = _setup(role_client, endpoints, "producer", queue)
    try:
        assert ready["type"] == "ready" and ready["client"]["name"] == role_client.name
        assert ready["client"]["libraries"], "a ready message names the library versions"
        assert abs(ready["clock_ns"] - time.monotonic_ns()) < 5e9, "CLOCK_MONOTONIC, the harness's clock"
        answered: list[int] = []
        for first, n in ((0, 1), (1, 5)):
            started = time.monotonic_ns()
            process.send({"type": "publish", "jobs": [
                {"seq": first + i, "name": "user_variables_update", "data": {"n": first + i}, "attempts": 1}
                for i in range(n)]})
            got = _until(process, "accepted")
            assert got[-1]["seqs"] == list(range(first, first + n)) and len(set(got[-1]["ids"])) == n
            assert started <= got[-1]["t_ns"] <= time.monotonic_ns()
            answered += got[-1]["seqs"]
        assert answered == list(range(6))
        process.send({"type": "stop"})
        assert process.proc.wait(20) == 0
    finally:
        process.close(5)
        _cleanup(role_client, endpoints, queue)


def test_a_worker_reports_each_run_with_its_trace_then_counts_that_agree(role_client, endpoints):
    queue = f"bb-proto-{uuid.uuid4().hex[:8]}"
    producer, _ = _setup(role_client, endpoints, "producer", queue)
    # Half the jobs carry the harness's own ids (BullMQ's jobId, AMQP's message_id): the role must
    # accept them under those ids and report their runs under them.
    chosen = {i: f"{queue}-job-{i}" for i in range(0, 8, 2)}
    jobs = [{"seq": i, "name": "user_variables_update", "data": {"trace": [0, i, 0, 0], "work_ms": 1}, "attempts": 1,
             **({"id": chosen[i]} if i in chosen else {})} for i in range(8)]
    jobs.append({"seq": 8, "name": "poison_workflow", "data": {"trace": [0, 8, 0, 0]}, "attempts": 2})
    try:
        producer.send({"type": "publish", "jobs": jobs})
        accepted = _until(producer, "accepted")[-1]
        assert accepted["seqs"] == list(range(9))
        assert [accepted["ids"][i] for i in chosen] == list(chosen.values())
        producer.send({"type": "stop"})
        producer.close(20)
        worker, _ = _setup(role_client, endpoints, "worker", queue, concurrency=4, prefetch=4,
                           cpu_share={"user_variables_update": 0.5})
        worker.send({"type": "consume"})
        runs: list[dict] = []
        deadline = time.monotonic() + 30
        while len(runs) < 10 and time.monotonic() < deadline:  # 8 + the poison job's 2 attempts
            message = worker.receive(timeout=0.2)
            if message and message["type"] == "ran":
                runs.append(message)
        worker.send({"type": "stop"})
        done = _until(worker, "done")[-1]["report"]
        worker.close(20)
    finally:
        _cleanup(role_client, endpoints, queue)
    assert sorted(r["trace"][1] for r in runs) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert all(r["start_ns"] <= r["end_ns"] for r in runs)
    assert {r["trace"][1]: r["id"] for r in runs if r["trace"][1] in chosen} == chosen
    poison = sorted((r["attempts_made"], r["final"]) for r in runs if r["name"] == "poison_workflow")
    assert poison == [(0, False), (1, True)]
    assert all(r["final"] for r in runs if r["name"] != "poison_workflow")
    assert (done["completed"], done["retried"], done["failed"], done["lost_lock"]) == (8, 1, 1, 0)


def test_a_role_refuses_an_option_it_does_not_know_and_a_message_before_setup(role_client):
    process = RoleProcess(role_client)
    try:
        process.send({"type": "publish", "jobs": [{"seq": 0, "name": "x", "data": {}}]})
        with pytest.raises(RoleFailed, match="before setup"):
            process.receive(timeout=20)
    finally:
        process.close(5)
    process = RoleProcess(role_client)
    try:
        process.send({"type": "setup", "protocol": 1, "role": "producer", "index": 0, "url": "x://nowhere",
                      "queue": "q", "options": {"no_such_option": 1}})
        with pytest.raises(RoleFailed, match="no_such_option"):
            process.receive(timeout=20)
    finally:
        process.close(5)


def test_a_role_whose_harness_goes_away_exits_at_once(role_client):
    process = subprocess.Popen(list(role_client.command), cwd=role_client.cwd, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    process.stdin.close()  # end of file: the harness died
    assert process.wait(20) == 0


def test_every_message_kind_has_a_schema_branch_and_bad_lines_are_named():
    kinds = {branch["properties"]["type"]["const"] for branch in protocol.schema()["oneOf"]}
    assert kinds == set(protocol.TO_ROLE) | set(protocol.FROM_ROLE)
    with pytest.raises(protocol.ProtocolError, match="not a JSON line"):
        protocol.parse(b"hello\n")
    with pytest.raises(protocol.ProtocolError, match="accepted"):
        protocol.parse(json.dumps({"type": "accepted", "seqs": [0]}))
    with pytest.raises(protocol.ProtocolError, match="none of"):
        protocol.parse(json.dumps({"type": "shout"}))


def test_the_quick_check_of_a_ran_line_accepts_only_what_the_schema_accepts():
    """A ``ran`` line (one per job) is checked by hand, not by the generic validator; every
    variation below must get the schema's verdict."""
    import copy

    import jsonschema

    from benchmarks.contenders.protocol import _plainly_valid_ran, _validators

    good = {"type": "ran", "id": "7", "name": "user_variables_update", "trace": [0, 1, 2, 3], "start_ns": 1,
            "end_ns": 2, "redelivered": False, "attempts_made": 0, "final": True}
    variants = [good, {**good, "trace": None}, {**good, "trace": {"id": 1}}, {**good, "id": 7},
                {**good, "name": None}, {**good, "start_ns": 1.5}, {**good, "end_ns": True},
                {**good, "redelivered": 0}, {**good, "final": "yes"}, {**good, "attempts_made": -1},
                {**good, "attempts_made": False}, {**good, "extra": 1}]
    variants += [{k: v for k, v in good.items() if k != key} for key in good if key != "type"]
    schema_says = _validators()["ran"]
    for message in variants:
        valid = True
        try:
            schema_says.validate(copy.deepcopy(message))
        except jsonschema.ValidationError:
            valid = False
        if _plainly_valid_ran(message):
            assert valid, f"the quick check accepted what the schema refuses: {message}"
        if not valid:
            with pytest.raises(protocol.ProtocolError):
                protocol.check(message)
        else:
            assert protocol.check(message) is message
