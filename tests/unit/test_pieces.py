"""Pieces that need no broker: options, codecs, decisions, ack batching, names, provisioning."""

from __future__ import annotations

import json
import re

import pytest
from pika import BasicProperties

from brokers import provision, registry
from brokers.amqp import codec as amqp_codec
from brokers.amqp.topology import Topology, delay_bits
from brokers.amqp.worker import AmqpWorker
from brokers.bullmq_redis import codec as redis_codec
from brokers.bullmq_redis.keys import QueueKeys, lane_queue_name
from brokers.bullmq_redis.scripts import SCRIPT_NAMES, queue_keys, script_source
from brokers.contract import (
    MAX_DELAY_MS,
    Backoff,
    BackoffType,
    Broker,
    InvalidJob,
    Job,
    JobOptions,
    Outcome,
    UnrecoverableError,
    encode_data,
)
from brokers.dispatch import JobRunner, JobThreads, run_handler, settle_failure
from brokers.urls import redact


# ------------------------------------------------------------------------------------- options
def test_backoff_formulas_match_bullmq():
    exp = Backoff(BackoffType.EXPONENTIAL, 1000)
    assert [exp.delay_for(n) for n in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000]
    assert [Backoff("fixed", 250).delay_for(n) for n in (1, 5)] == [250, 250]
    assert Backoff.from_json(300) == Backoff("fixed", 300)
    assert Backoff.from_json({"type": "exponential", "delay": 5}) == Backoff("exponential", 5)
    assert Backoff.from_json(None) is None
    with pytest.raises(InvalidJob):
        Backoff.from_json({"type": "jitter"})


@pytest.mark.parametrize("bad", [dict(priority=11), dict(priority=-1), dict(attempts=0), dict(delay_ms=-5),
                                 dict(job_id="42"), dict(job_id="a:b"), dict(job_id=""),
                                 dict(remove_on_complete=-1)])
def test_job_options_refuse_bad_values(bad):
    with pytest.raises(InvalidJob):
        JobOptions(**bad)


def test_encode_data_refuses_what_json_cannot_hold():
    assert encode_data({"a": [1, "é"]}) == '{"a":[1,"\\u00e9"]}'
    for bad in ({"x": float("nan")}, {"x": {1, 2}}, object()):
        with pytest.raises(InvalidJob):
            encode_data(bad)


def test_queue_and_lane_names_are_checked():
    class Dummy(Broker):
        capabilities = producer = worker = stats = purge = close = failed_jobs = None  # type: ignore

    with pytest.raises(ValueError):
        Dummy("bad name!")
    with pytest.raises(ValueError):
        Dummy("ok", routes={"heavy_workflow_execution": "bad lane"})
    broker = Dummy("ok", routes={"heavy_workflow_execution": "heavy"})
    assert broker.lanes == ["default", "heavy"]
    assert broker.lane_for("heavy_workflow_execution") == "heavy"
    assert broker.lane_for("anything_else") == "default"


# ---------------------------------------------------------------------------------- decisions
def job(attempts=3, made=0, backoff=None) -> Job:
    return Job("1", "t", {}, JobOptions(attempts=attempts, backoff=backoff), attempts_made=made)


def test_failure_retries_with_backoff_until_the_last_attempt():
    first = settle_failure(job(backoff=Backoff("exponential", 100)), "boom")
    assert (first.outcome, first.delay_ms) == (Outcome.RETRIED, 100)
    second = settle_failure(job(made=1, backoff=Backoff("exponential", 100)), "boom")
    assert (second.outcome, second.delay_ms) == (Outcome.RETRIED, 200)
    last = settle_failure(job(made=2), "boom")
    assert last.outcome is Outcome.FAILED and last.reason == "boom"
    assert settle_failure(job(), "no", unrecoverable=True).outcome is Outcome.FAILED


def test_run_handler_classifies_results():
    ok = run_handler(job(), lambda j: {"n": 1})
    assert ok.outcome is Outcome.COMPLETED and json.loads(ok.result_json) == {"n": 1}

    def unrecoverable(j):
        raise UnrecoverableError("bad input")
    assert run_handler(job(), unrecoverable).outcome is Outcome.FAILED
    assert run_handler(job(), lambda j: object()).reason.startswith("handler returned a value")
    assert "unknown job type 't'" in run_handler(job(), {"other": lambda j: 1}).reason

    def boom(j):
        raise KeyError("k")
    retried = run_handler(job(), boom)
    assert retried.outcome is Outcome.RETRIED and retried.reason == "KeyError: 'k'"
    assert "Traceback" in retried.stacktrace


def test_job_runner_runs_on_threads_and_wakes_the_loop():
    wakes = []
    runner = JobRunner(lambda j: j.id, 4, wake=lambda: wakes.append(1))
    for i in range(20):
        runner.submit(Job(str(i), "t", {}, JobOptions()))
    got = []
    while len(got) < 20:
        got += runner.collect(timeout=1)
    runner.shutdown()
    assert sorted(int(s.job.id) for s in got) == list(range(20))
    assert runner.in_flight == 0 and wakes


def test_job_threads_start_as_needed_survive_a_raising_call_and_finish_what_was_submitted():
    import threading
    import time

    pool = JobThreads(4, "t")
    gate, ran, names = threading.Event(), [], set()

    def call(i: int) -> None:
        gate.wait(5)
        names.add(threading.current_thread().name)
        if i == 3:
            raise RuntimeError("a call that raises keeps its thread")
        time.sleep(0.001)
        ran.append(i)

    for i in range(2):
        pool.submit(call, i, busy=i + 1)
    assert len(pool._threads) == 2, "no more threads than calls that may be running"
    for i in range(2, 30):
        pool.submit(call, i, busy=i + 1)
    assert len(pool._threads) == 4, "never more than its size"
    gate.set()
    pool.shutdown()  # runs everything submitted first
    assert sorted(ran) == [i for i in range(30) if i != 3]
    assert names <= {f"t_{n}" for n in range(4)} and not pool._threads


# ---------------------------------------------------------------------------- redis codec
def test_bullmq_opts_round_trip():
    options = JobOptions(delay_ms=5, priority=2, attempts=4, backoff=Backoff("exponential", 10),
                         job_id="abc", remove_on_complete=100, remove_on_fail=True)
    opts = redis_codec.options_to_opts(options)
    assert opts == {"attempts": 4, "delay": 5, "priority": 2, "backoff": {"type": "exponential", "delay": 10},
                    "jobId": "abc", "removeOnComplete": 100, "removeOnFail": True}
    assert redis_codec.options_from_opts(opts) == options
    # what the official clients write: no removeOnComplete means keep; {count} form
    parsed = redis_codec.options_from_opts({"attempts": 0, "removeOnComplete": {"count": 5}})
    assert (parsed.attempts, parsed.remove_on_complete, parsed.remove_on_fail) == (1, 5, False)
    assert [redis_codec.keep_arg(k) for k in (True, False, 7)] == [0, -1, 7]


def test_job_hash_with_bad_payload_is_rejected_not_raised():
    fields = {"name": b"t", "data": b"\xff{", "opts": b"{}", "atm": b"1", "ats": b"3", "timestamp": b"9"}
    parsed, reason = redis_codec.job_from_hash("7", fields, "default")
    assert reason.startswith("malformed payload")
    assert (parsed.attempts_made, parsed.deliveries, parsed.redelivered) == (1, 3, True)
    _, reason = redis_codec.job_from_hash("7", {"name": b"t", "data": b"{}", "opts": b"[1"}, "default")
    assert reason.startswith("malformed job options")


def test_key_layout_is_bullmqs():
    keys = QueueKeys("workflow-processing")
    assert keys.wait == "bull:workflow-processing:wait"
    assert keys.lock("12") == "bull:workflow-processing:12:lock"
    assert keys.stalled_check == "bull:workflow-processing:stalled-check"
    assert len(queue_keys(keys)) == 14 and queue_keys(keys)[-1] == "bull:workflow-processing:paused"
    assert lane_queue_name("q", "default") == "q" and lane_queue_name("q", "heavy") == "q-heavy"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_lua_scripts_have_headers_and_resolved_includes(name):
    source = script_source(name)
    assert not re.search(r"^-- @include", source, re.MULTILINE)
    if name != "addJobs":  # workers must go on when Redis is full; producers must be refused
        assert source.startswith("#!lua flags=allow-oom\n")
        source = source.split("\n", 1)[1]
    else:
        assert not source.startswith("#!")
    assert source.lstrip().startswith("--[[")
    assert "local function takeJobs" in source  # the shared include is in every script
    header = source.split("]]")[0]
    assert "KEYS" in header and "ARGV" in header and "Returns" in header


# ------------------------------------------------------------------------------ amqp codec
def test_amqp_properties_round_trip():
    options = JobOptions(attempts=5, backoff=Backoff("fixed", 30), priority=2, remove_on_fail=True)
    props = amqp_codec.build_properties("id1", "heavy_workflow_execution", options, persistent=True,
                                        amqp_priority=9, attempts_made=2)
    parsed, reason = amqp_codec.job_from_message(props, b'{"a":1}', redelivered=False, lane="default")
    assert reason is None and parsed.data == {"a": 1}
    assert parsed.options == options
    assert (parsed.attempts_made, parsed.deliveries, parsed.redelivered) == (2, 3, False)
    again, _ = amqp_codec.job_from_message(props, b"{}", redelivered=True, lane="default")
    assert again.redelivered
    bad, reason = amqp_codec.job_from_message(props, b"\x00nope", redelivered=False, lane="default")
    assert reason.startswith("malformed payload") and bad.data is None
    _, reason = amqp_codec.job_from_message(BasicProperties(message_id="x"), b"{}", False, "default")
    assert "no job type" in reason


def test_republish_drops_broker_headers():
    props = BasicProperties(message_id="m", type="t", headers={"x-death": [1], "x-first-death-queue": "q",
                                                                "x-delivery-count": 3, "bb-attempts": 2})
    copy = amqp_codec.republish_properties(props, {"bb-attempts-made": 1})
    assert copy.headers == {"bb-attempts": 2, "bb-attempts-made": 1}
    assert props.headers["x-delivery-count"] == 3  # the original is untouched


def test_topology_names_and_priorities():
    topo = Topology("jobs", {"heavy_workflow_execution": "heavy"}, max_priority=10)
    assert topo.lanes == ["default", "heavy"]
    assert topo.lane_queue("heavy") == "jobs.heavy" and topo.delay_level(7) == "jobs.delay-07"
    assert len(topo.delay_queues()) == 28 and len(set(topo.all_queues())) == len(topo.all_queues())
    assert [topo.amqp_priority(p) for p in (0, 1, 5, 10)] == [0, 10, 6, 1]
    assert Topology("jobs", {}).amqp_priority(1) == 0
    assert topo.lane_arguments()["x-dead-letter-exchange"] == "jobs.dlx"
    with pytest.raises(ValueError, match="quorum"):
        Topology("jobs", {}, queue_type="quorum", max_priority=10)
    with pytest.raises(ValueError, match="wildcards"):
        Topology("jobs", {"reports.#": "heavy"})
    with pytest.raises(ValueError, match="at most 255 bytes"):
        Topology("q" * 250, {})


@pytest.mark.parametrize("delay", [1, 2, 15, 16, 17, 250, 500, 1000, 2999, 3000, 65_537, 2**31, MAX_DELAY_MS])
def test_a_delay_passes_each_set_bit_s_level_once_and_is_never_early(delay):
    """The delay levels a message visits (bit headers "1") hold it 2^n ms each: the sum is the
    delay rounded up to the next 16 ms, never less."""
    first, bits = delay_bits(delay)
    assert bits[f"bb-delay-bit-{first}"] == "1" and set(bits) == {f"bb-delay-bit-{n}" for n in range(4, first + 1)}
    waits = sum(2**n for n in range(4, first + 1) if bits[f"bb-delay-bit-{n}"] == "1")
    assert delay <= waits < delay + 16 and waits % 16 == 0
    for bad in (0, -1, MAX_DELAY_MS + 1):
        with pytest.raises(ValueError):
            delay_bits(bad)
    assert delay_bits(500)[1] == {**{f"bb-delay-bit-{n}": "0" for n in range(4, 9)}, "bb-delay-bit-9": "1"}


def test_the_delay_topology_does_not_grow_with_the_number_of_delays():
    topo = Topology("jobs", {})
    levels = {topo.delayed_route(d)[0] for d in range(1, 5001)}
    assert levels <= set(topo.delay_queues()) and len(topo.delay_queues()) == 28
    assert topo.declared_counts()["queues"] == 1 + 1 + 28


class FakeChannel:
    def __init__(self):
        self.acks: list[tuple[int, bool]] = []

    def basic_ack(self, tag, multiple=False):
        self.acks.append((tag, multiple))


def ack_worker(batch: int) -> AmqpWorker:
    worker = AmqpWorker.__new__(AmqpWorker)
    worker.ack_batch, worker.ack_interval_s = batch, 3600
    worker.counted = []
    worker._count = lambda s, outcome: worker.counted.append((s, outcome))
    worker._reset_acks()
    worker._ch = FakeChannel()
    return worker


def settled(w: AmqpWorker, *tags: int) -> None:
    for tag in tags:
        w._done[tag] = (f"job{tag}", Outcome.COMPLETED)


def test_acks_cover_contiguous_runs_with_one_multiple_ack():
    w = ack_worker(batch=3)
    settled(w, 1, 2)
    w._flush_acks(force=False)
    assert w._ch.acks == [] and w.counted == []  # run of 2 < batch: not acked, not yet counted
    settled(w, 3, 5)
    w._flush_acks(force=False)
    assert w._ch.acks == [(3, True)]            # 1..3 in one ack; 5 waits behind 4
    assert [s for s, _ in w.counted] == ["job1", "job2", "job3"]
    w._flush_acks(force=True)
    assert w._ch.acks == [(3, True), (5, False)]  # forced: 5 acked on its own
    settled(w, 4, 6)
    w._flush_acks(force=True)
    # 4 and 6 form the new run (5 was acked alone): the multiple ack names 6, a live tag
    assert w._ch.acks[-1] == (6, True) and w._cursor == 6
    assert sorted(s for s, _ in w.counted) == [f"job{i}" for i in range(1, 7)]
    assert {o for _, o in w.counted} == {Outcome.COMPLETED}


def test_a_settlement_whose_ack_never_left_is_counted_lost_when_its_channel_goes():
    w = ack_worker(batch=3)
    settled(w, 1, 2, 4)
    w._flush_acks(force=False)                  # 1, 2 wait in the run; 4 behind the gap
    w._reset_acks()                             # the broker closed the channel (consumer_timeout)
    assert sorted(w.counted) == [("job1", Outcome.LOST_LOCK), ("job2", Outcome.LOST_LOCK),
                                 ("job4", Outcome.LOST_LOCK)]
    assert w._done == {} and w._run == []


# ------------------------------------------------------------------------------ urls, provision
def test_redact_hides_passwords_only():
    assert redact("amqp://guest:secret@host:5672/%2F") == "amqp://guest:***@host:5672/%2F"
    assert redact("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


class _NotInstalled:
    program = "nowhere-server"

    @classmethod
    def binary(cls):
        return None


def _unreachable(url, timeout):
    from brokers.contract import BrokerUnavailable

    raise BrokerUnavailable(f"nothing at {redact(url)} is unreachable (test)")


@pytest.fixture
def nowhere(monkeypatch):
    """A registered kind with nothing anywhere: no URL answers, no binary, no Docker."""
    import sys
    import types

    module = types.ModuleType("nowhere_server")
    module.NotInstalled = _NotInstalled
    monkeypatch.setitem(sys.modules, "nowhere_server", module)
    driver = registry.register(registry.Driver(
        kind="nowhere", label="Nowhere", adapter_path="brokers.memory:MemoryBroker", protocol="test",
        env_var="NOWHERE_URL", default_url="nowhere://u:secret@127.0.0.1:1/", install_hint="install nothing",
        probe=_unreachable, server_path="nowhere_server:NotInstalled", docker_image="nowhere:1"))
    monkeypatch.setattr(provision, "_found", {})
    monkeypatch.setattr(provision, "_docker_engine", lambda: "no Docker engine answers (test)")
    monkeypatch.delenv("NOWHERE_URL", raising=False)
    yield driver
    registry.unregister("nowhere")


def test_provision_lists_every_way_it_tried(nowhere):
    with pytest.raises(provision.BrokerNotFound) as err:
        provision.find("nowhere")
    text = str(err.value)
    for expected in ("no Nowhere available", "NOWHERE_URL: not set", "127.0.0.1:1", "nowhere-server not installed",
                     "no Docker engine", "To fix: install nothing"):
        assert expected in text
    assert "secret" not in text


def test_provision_never_replaces_a_url_you_set(nowhere, monkeypatch):
    monkeypatch.setenv("NOWHERE_URL", "nowhere://u:topsecret@127.0.0.1:2/")
    with pytest.raises(provision.BrokerNotFound, match="NOWHERE_URL is set") as err:
        provision.find("nowhere")
    assert "topsecret" not in str(err.value)


def test_every_compared_broker_says_how_to_get_one():
    for kind in registry.compared_kinds():
        driver = registry.get(kind)
        assert driver.env_var and driver.default_url and "docker compose up -d" in driver.install_hint
        assert driver.server_class() is not None and driver.docker_image


def test_an_unknown_kind_is_an_error_never_a_fallback():
    with pytest.raises(ValueError, match="unknown broker 'kafka'; known: .*memory"):
        registry.get("kafka")
    with pytest.raises(ValueError, match="unknown broker"):
        provision.find("kafka")


# -------------------------------------------------------------- bad input never stops a worker
@pytest.mark.parametrize("opts", [b"[]", b"null", b'{"backoff": "x"}', b"{not json"])
def test_any_job_options_a_client_wrote_are_rejected_not_raised(opts):
    job, reason = redis_codec.job_from_hash("1", {"name": b"t", "data": b"{}", "opts": opts}, "default")
    assert reason.startswith("malformed job options") and job.data is None


def test_absurd_numbers_and_deep_json_are_survived():
    job, reason = redis_codec.job_from_hash("1", {"name": b"t", "data": b"{}", "opts": b'{"attempts":1e400}'},
                                            "default")
    assert reason is None and job.options.attempts == 1
    _, reason = redis_codec.job_from_hash("1", {"name": b"t", "data": b"[" * 100_000, "opts": b"{}"}, "default")
    assert reason.startswith("malformed payload")
    for headers in ({"bb-attempts": [1]}, {"bb-backoff": {"a": 1}}, {"bb-attempts": float("inf")}):
        job, reason = amqp_codec.job_from_message(BasicProperties(type="t", message_id="1", headers=headers),
                                                  b"{}", False, "default")
        assert job.options.attempts >= 1 and (reason is None or "malformed" in reason)
    _, reason = amqp_codec.job_from_message(BasicProperties(type="t", message_id="1"), b"[" * 100_000, False,
                                            "default")
    assert reason.startswith("malformed payload")


def test_a_handler_raising_base_exception_on_a_thread_still_settles_its_job():
    def leave(job):
        raise SystemExit("handler called exit")

    runner = JobRunner(leave, 2)
    runner.submit(Job("1", "t", {}, JobOptions()))
    settled = runner.collect(timeout=5)
    runner.shutdown()
    assert len(settled) == 1 and settled[0].outcome is Outcome.FAILED
    assert "SystemExit" in settled[0].reason and runner.in_flight == 0
