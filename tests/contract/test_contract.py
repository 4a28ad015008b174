"""The contract every adapter keeps, run against real brokers: one suite, every adapter.

Each test runs once per adapter (the ``kind`` fixture) on a queue of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from brokers import registry
from brokers.contract import AuthenticationFailed, Backoff, BrokerUnavailable, InvalidJob, JobOptions, JobSpec, Outcome
from tests.helpers.faults import drop_own_connections, inject_raw
from tests.helpers.recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]


def drain(broker, handler, expected: int, *, concurrency: int = 1, timeout: float = 30, **options):
    """Run one worker until ``expected`` jobs settled (or timeout); return its report."""
    worker = broker.worker(handler, concurrency=concurrency, **options)
    report = worker.run(max_jobs=expected, timeout=timeout)
    return report


def test_publish_consume_ack(broker):
    rec = Recorder()
    with broker.producer() as producer:
        ids = producer.publish_many([JobSpec("user_variables_update", {"user": i}) for i in range(20)])
        ids.append(producer.publish("statistics_aggregation", {"project": "p1"}))
    assert len(set(ids)) == 21
    assert broker.stats().waiting == 21
    report = drain(broker, rec.handler(), 21)
    assert report.completed == 21 and report.failed == 0
    assert sorted(rec.ids()) == sorted(ids)
    assert {s.data["user"] for s in rec.seen if s.name == "user_variables_update"} == set(range(20))
    stats = broker.stats()
    assert stats.waiting == 0 and stats.delayed == 0
    if stats.active is not None:
        assert stats.active == 0


def test_fifo_with_one_worker(broker):
    rec = Recorder()
    with broker.producer() as producer:
        ids = [producer.publish("user_variables_update", {"n": i}) for i in range(30)]
    drain(broker, rec.handler(), 30)
    assert rec.ids() == ids


def test_competing_consumers_share_work_without_loss_or_duplicates(broker):
    rec = Recorder()
    with broker.producer() as producer:
        ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(300)])
    workers = [broker.worker(rec.handler(worker=f"w{i}", sleep=0.002), concurrency=2) for i in range(3)]
    threads = [w.start_in_thread(idle_timeout=2.0, timeout=60) for w in workers]
    for t in threads:
        t.join(timeout=70)
    counts = rec.counts()
    assert set(counts) == set(ids), "every job ran"
    assert max(counts.values()) == 1, "no job ran twice"
    per_worker = {s.worker for s in rec.seen}
    assert per_worker == {"w0", "w1", "w2"}, f"every consumer got work: {per_worker}"
    assert sum(w.report.completed for w in workers) == 300


@pytest.mark.needs("redelivery_after_crash")
def test_sigkill_mid_job_redelivers_and_loses_nothing(network_kind, make_broker, endpoints, tmp_path):
    kind = network_kind
    broker = make_broker(kind)
    with broker.producer() as producer:
        slow_id = producer.publish("slow", {"sleep": 60})
        other_ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(10)])
    started, finished = tmp_path / "started", tmp_path / "finished"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.worker_process", "--kind", kind, "--queue", broker.queue,
         "--started", str(started), "--finished", str(finished)], cwd=ROOT,
        env={**os.environ, "BROKERBENCH_CHILD_URL": endpoints[kind].url})
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the worker process never started the slow job"
        assert started.read_text() == slow_id
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = Recorder()
    killed_at = time.time()
    worker = broker.worker(rec.handler(), concurrency=2, **registry.get(kind).fast_recovery)
    worker.run(idle_timeout=4.0, timeout=30)
    runs = rec.of(slow_id)
    assert runs, "the killed worker's job was redelivered"
    assert runs[0].redelivered and runs[0].deliveries >= 2
    assert runs[0].attempts_made == 0, "a crash is not a failed attempt"
    finished_before_kill = set(finished.read_text().split()) if finished.exists() else set()
    assert set(other_ids) <= set(rec.ids()) | finished_before_kill, "no job lost"
    stats = broker.stats()
    assert stats.waiting == 0 and stats.failed == 0
    redelivery_s = runs[0].at - killed_at
    assert redelivery_s < 10


@pytest.mark.needs("retries")
def test_retries_with_exponential_backoff(broker):
    rec = Recorder()
    options = JobOptions(attempts=3, backoff=Backoff("exponential", 150), remove_on_complete=False)
    with broker.producer() as producer:
        job_id = producer.publish("heavy_workflow_execution", {"x": 1}, options)
    report = drain(broker, rec.handler(fail=lambda job: job.attempts_made < 2), 3, concurrency=2)
    runs = rec.of(job_id)
    assert [r.attempts_made for r in runs] == [0, 1, 2]
    assert report.retried == 2 and report.completed == 1
    gaps = [b.at - a.at for a, b in zip(runs, runs[1:])]
    # exponential: 150 ms after the 1st failure, 300 ms after the 2nd (clocks in ms: 5 ms slack)
    assert gaps[0] >= 0.150 - 0.005, gaps
    assert gaps[1] >= 0.300 - 0.005, gaps
    assert broker.stats().failed == 0


@pytest.mark.needs("retries", "dead_letter")
def test_fixed_backoff_then_dead_letter_with_reason(broker):
    rec = Recorder()
    options = JobOptions(attempts=3, backoff=Backoff("fixed", 100))
    with broker.producer() as producer:
        job_id = producer.publish("statistics_aggregation", {"project": "p"}, options)
    report = drain(broker, rec.handler(fail=lambda job: True), 3)
    runs = rec.of(job_id)
    assert len(runs) == 3 and report.failed == 1 and report.retried == 2
    assert all(b.at - a.at >= 0.095 for a, b in zip(runs, runs[1:]))
    failed = broker.failed_jobs()
    assert [f.id for f in failed] == [job_id]
    assert "RuntimeError: planned failure" in failed[0].reason
    assert failed[0].attempts_made == 3
    assert failed[0].data == {"project": "p"}
    assert broker.stats().failed == 1


@pytest.mark.needs("delay")
def test_delayed_job_not_delivered_before_its_delay(broker):
    rec = Recorder()
    with broker.producer() as producer:
        sent = time.time()
        job_id = producer.publish("user_variables_update", {"later": True}, JobOptions(delay_ms=700))
        now_id = producer.publish("user_variables_update", {"later": False})
        producer.flush()
        assert broker.stats().delayed == 1
    drain(broker, rec.handler(), 2)
    assert rec.ids() == [now_id, job_id]
    assert rec.of(job_id)[0].at - sent >= 0.700 - 0.005
    assert broker.stats().delayed == 0


@pytest.mark.needs("priority")
def test_priority_order_under_backlog(broker):
    rec = Recorder()
    plan = [5, 1, 3, 2, 4, 1, 5, 3]
    with broker.producer() as producer:
        ids = [producer.publish("user_variables_update", {"p": p}, JobOptions(priority=p)) for p in plan]
    drain(broker, rec.handler(), len(plan), **registry.get(broker.kind).worker_options(1, 1))
    order = [s.data["p"] for s in rec.seen]
    assert order == sorted(plan), order
    # FIFO within one priority level
    ones = [ids[i] for i, p in enumerate(plan) if p == 1]
    assert [i for i in rec.ids() if i in ones] == ones


@pytest.mark.needs("routing")
def test_routing_by_job_type(kind, make_broker):
    broker = make_broker(kind, routes={"heavy_workflow_execution": "heavy"})
    heavy, rest = Recorder(), Recorder()
    with broker.producer() as producer:
        producer.publish_many([JobSpec("heavy_workflow_execution", {"n": i}) for i in range(5)]
                              + [JobSpec("user_variables_update", {"n": i}) for i in range(5)]
                              + [JobSpec("statistics_aggregation", {"n": i}) for i in range(3)])
    drain(broker, heavy.handler(), 5, lanes=["heavy"])
    drain(broker, rest.handler(), 8, lanes=["default"])
    assert {s.name for s in heavy.seen} == {"heavy_workflow_execution"} and len(heavy.seen) == 5
    assert {s.name for s in rest.seen} == {"user_variables_update", "statistics_aggregation"}
    assert len(rest.seen) == 8
    with pytest.raises(ValueError, match="unknown lanes"):
        broker.worker(heavy.handler(), lanes=["nope"])


def test_stats_and_purge(broker):
    with broker.producer() as producer:
        producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(7)])
        producer.publish("user_variables_update", {}, JobOptions(delay_ms=60_000))
    stats = broker.stats()
    assert (stats.waiting, stats.delayed) == (7, 1)
    broker.purge()
    stats = broker.stats()
    assert (stats.waiting, stats.delayed, stats.failed) == (0, 0, 0)
    rec = Recorder()
    report = broker.worker(rec.handler()).run(idle_timeout=1.0, timeout=10)
    assert report.settled == 0 and rec.ids() == []


def test_bad_input_fails_with_reason_and_worker_goes_on(broker):
    rec = Recorder()
    handlers = {"user_variables_update": rec.handler()}
    with broker.producer() as producer:
        first = producer.publish("user_variables_update", {"n": 1})
        malformed = inject_raw(broker, "user_variables_update", b"{not json")
        unknown = producer.publish("send_fax", {"to": "1970"}, JobOptions(attempts=3))
        last = producer.publish("user_variables_update", {"n": 2})
    report = drain(broker, handlers, 4)
    assert rec.ids() == [first, last]
    assert report.completed == 2 and report.failed == 2 and report.retried == 0
    reasons = {f.id: f.reason for f in broker.failed_jobs()}
    assert set(reasons) == {malformed, unknown}
    assert reasons[malformed].startswith("malformed payload")
    assert "unknown job type 'send_fax'" in reasons[unknown]


def test_invalid_jobs_are_refused_at_publish(broker):
    with broker.producer() as producer:
        with pytest.raises(InvalidJob, match="JSON"):
            producer.publish("user_variables_update", {"when": object()})
        with pytest.raises(InvalidJob):
            producer.publish("", {})
    with pytest.raises(InvalidJob):
        JobOptions(priority=99)
    assert broker.stats().waiting == 0


def test_unreachable_broker_gives_clear_error_fast(network_kind):
    driver = registry.get(network_kind)
    parts = urlsplit(driver.default_url)
    credentials = parts.netloc.rpartition("@")[0]
    url = urlunsplit(parts._replace(netloc=(credentials + "@" if credentials else "") + "127.0.0.1:1"))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="unreachable") as err:
        driver.open(url, queue="nowhere")
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(err.value)


def test_wrong_credentials_give_clear_error_without_the_password(network_kind, endpoints):
    """A broker that requires a password (the kind's own, or a private one told to), given a
    wrong one."""
    driver = registry.get(network_kind)

    def wrong(url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:s3cret-wrong@{parts.hostname}:{parts.port}"))

    if driver.password_config is None:  # every broker of this kind asks for credentials
        with pytest.raises(AuthenticationFailed) as err:
            driver.open(wrong(endpoints[network_kind].url), queue="creds")
    else:
        with driver.server_class()(config=dict(driver.password_config("right-one"))) as private:
            with pytest.raises(AuthenticationFailed) as err:
                driver.open(wrong(private.url), queue="creds")
    assert "s3cret-wrong" not in str(err.value)
    assert "***" in str(err.value)


def test_dropped_connection_is_survived_and_nothing_lost(network_kind, make_broker, endpoints):
    kind = network_kind
    broker = make_broker(kind)
    rec = Recorder()
    producer = broker.producer()
    first = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(50)])
    worker = broker.worker(rec.handler(sleep=0.01), concurrency=2)
    thread = worker.start_in_thread(timeout=60)
    while len(rec.seen) < 10:
        time.sleep(0.01)
    killed = drop_own_connections(endpoints[kind])
    assert killed >= 1, "the clients' connections were dropped (Redis clients share a pool: one may serve both)"
    second = producer.publish_many([JobSpec("user_variables_update", {"n": 100 + i}) for i in range(50)])
    producer.close()
    deadline = time.monotonic() + 40
    while set(first + second) - set(rec.ids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker.stop()
    thread.join(timeout=30)
    assert set(first + second) <= set(rec.ids()), "no job lost"
    stats = broker.stats()
    assert stats.waiting == 0


def test_stop_settles_in_flight_jobs(broker):
    rec = Recorder()
    with broker.producer() as producer:
        producer.publish_many([JobSpec("heavy_workflow_execution", {"n": i}) for i in range(4)])
    worker = broker.worker(rec.handler(sleep=0.3), concurrency=4)
    thread = worker.start_in_thread(timeout=30)
    while len(rec.seen) < 4:
        time.sleep(0.01)
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert worker.report.completed == 4
    stats = broker.stats()
    assert stats.waiting == 0
    if stats.active is not None:
        assert stats.active == 0


def test_hooks_see_start_and_settlement(broker):
    from brokers.contract import Hooks

    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Tap(Hooks):
        def job_started(self, job):
            with lock:
                events.append(("start", job.id))

        def job_settled(self, job, outcome, detail):
            with lock:
                events.append((outcome.value, job.id))

    with broker.producer() as producer:
        ok = producer.publish("user_variables_update", {})
        bad = producer.publish("user_variables_update", {"fail": True})
    def handle(job):
        if job.data.get("fail"):
            raise RuntimeError("asked to fail")

    broker.worker(handle, hooks=[Tap()]).run(max_jobs=2, timeout=20)
    assert ("start", ok) in events and (Outcome.COMPLETED.value, ok) in events
    assert (Outcome.FAILED.value, bad) in events


@pytest.mark.needs("bounded_queue")
def test_a_full_queue_refuses_with_a_clear_error_and_loses_nothing(network_kind, make_broker):
    """Redis at maxmemory (noeviction, as BullMQ asks); RabbitMQ with x-max-length reject-publish."""
    from brokers.contract import PublishRejected

    driver = registry.get(network_kind)
    bound = driver.queue_bound
    private = driver.server_class()(config=dict(bound.server)).start() if bound.server else None
    if private is not None:
        broker = driver.open(private.url, queue="full", **bound.options)
    else:
        broker = make_broker(network_kind, **bound.options)
    try:
        accepted: list[str] = []
        producer = broker.producer()
        with pytest.raises(PublishRejected, match="full|refused") as err:
            for i in range(5000):
                accepted += producer.publish_many([JobSpec("statistics_aggregation", {"i": i, "pad": "x" * 4000})])
                producer.flush()
        refused = set(err.value.job_ids)
        accepted = [j for j in accepted if j not in refused]
        assert accepted, "some jobs fit before the queue was full"
        rec = Recorder()
        broker.worker(rec.handler(), concurrency=4).run(idle_timeout=2.0, timeout=60)
        assert set(accepted) <= set(rec.ids()), "every accepted job ran"
        assert not refused & set(rec.ids()), "refused jobs were not run"
    finally:
        if private is not None:
            broker.close()
            private.cleanup()


# ------------------------------------------------------------------ bad input never breaks a producer


def _still_works(broker, producer) -> None:
    """After an error, the same producer publishes and a worker runs what it published."""
    rec = Recorder()
    ok = producer.publish("user_variables_update", {"after": "the error"})
    producer.flush()
    broker.worker(rec.handler()).run(max_jobs=1, timeout=20)
    assert rec.ids() == [ok], "the producer kept working and its job ran"


def test_a_job_over_the_size_limit_is_refused_at_once_and_the_producer_goes_on(broker):
    producer = broker.producer()
    blob = "x" * 200_000_000  # 200 MB of data: above the 128 MiB default (RabbitMQ's own)
    started = time.monotonic()
    with pytest.raises(InvalidJob, match=r"200,000,\d+ bytes as JSON; the limit is 134,217,728 bytes"):
        producer.publish("user_variables_update", {"blob": blob})
    with pytest.raises(InvalidJob, match="the limit is 134,217,728"):  # one bad job in a batch: none is sent
        producer.publish_many([JobSpec("user_variables_update", {"n": 1}), JobSpec("statistics_aggregation",
                                                                                  {"blob": blob})])
    del blob
    assert time.monotonic() - started < 10, "at once, not after a timeout"
    assert broker.stats().waiting == 0, "nothing of the refused calls was sent"
    _still_works(broker, producer)
    producer.close()


def test_the_job_size_limit_is_a_broker_option(kind, make_broker):
    broker = make_broker(kind, max_job_bytes=1000)
    producer = broker.producer()
    with pytest.raises(InvalidJob, match="the limit is 1,000 bytes"):
        producer.publish("user_variables_update", {"pad": "y" * 1000})
    _still_works(broker, producer)
    producer.close()


def test_a_delay_out_of_range_is_refused_and_the_longest_one_is_kept(broker):
    from brokers.contract import MAX_DELAY_MS

    producer = broker.producer()
    for bad in (10**13, MAX_DELAY_MS + 1, -5, 1.5, True):
        with pytest.raises(InvalidJob, match="delay_ms must be an integer 0..4,294,967,280"):
            producer.publish("user_variables_update", {}, JobOptions(delay_ms=bad))
    producer.publish("user_variables_update", {"years": "later"}, JobOptions(delay_ms=MAX_DELAY_MS))
    producer.flush()
    assert broker.stats().delayed == 1, "the longest delay is held, not refused"
    _still_works(broker, producer)
    producer.close()


@pytest.mark.parametrize("name", ["", "x" * 256, "\udc80bad", 7, None])
def test_bad_job_names_are_refused(broker, name):
    producer = broker.producer()
    with pytest.raises(InvalidJob, match="job name"):
        producer.publish(name, {})
    producer.close()


@pytest.mark.parametrize("data", [{"deep": None}, {"nan": float("nan")}, {"set": {1}}, b"bytes", object()])
def test_data_json_cannot_hold_is_refused(broker, data):
    if data == {"deep": None}:
        data = []
        for _ in range(600):
            data = [data]
    producer = broker.producer()
    with pytest.raises(InvalidJob, match="JSON|nested"):
        producer.publish("user_variables_update", data)
    _still_works(broker, producer)
    producer.close()


@pytest.mark.parametrize("job_id", ["meta", "wait", "events", "id"])
def test_a_custom_id_never_corrupts_the_queue(broker, job_id):
    """An id that is one of BullMQ's own key names would write over that key: refused where it
    would (Redis), a plain id elsewhere; either way the queue keeps working."""
    producer = broker.producer()
    try:
        producer.publish("user_variables_update", {"custom": True}, JobOptions(job_id=job_id))
        producer.flush()
        accepted = True
    except InvalidJob as exc:
        assert "queue's own keys" in str(exc)
        accepted = False
    rec = Recorder()
    ok = producer.publish("user_variables_update", {"n": 1})
    producer.flush()
    broker.worker(rec.handler()).run(max_jobs=1 + accepted, timeout=20)
    assert set(rec.ids()) == {ok} | ({job_id} if accepted else set())
    producer.close()


def test_any_client_counts_and_purges_the_delayed_jobs_of_another(network_kind, make_broker):
    """Delayed jobs held by the broker are seen by every client of the queue (the runner's own
    reads the backlog), and a purge by any client removes them: none runs later."""
    publisher = make_broker(network_kind)
    other = make_broker(network_kind, queue=publisher.queue)
    with publisher.producer() as producer:
        producer.publish_many([JobSpec("user_variables_update", {"n": i}, JobOptions(delay_ms=300 + 200 * i))
                               for i in range(3)])
    assert other.stats().delayed == 3
    other.purge()
    time.sleep(1.2)
    rec = Recorder()
    other.worker(rec.handler()).run(idle_timeout=0.5, timeout=10)
    assert rec.ids() == [], "purged delayed jobs never ran"


def test_a_repeated_custom_id_does_what_capabilities_declare(broker):
    """The contract leaves a repeated custom job id to each adapter, and each declares it in
    ``capabilities.repeated_id``: where it says "none", the second publish is a second job and
    both run; elsewhere the job still held is not added again and runs once, with its first
    data. (Resending a job in doubt with its id is safe exactly where it is not "none".)"""
    from brokers.contract import Support

    rec = Recorder()
    with broker.producer() as producer:
        first = producer.publish("user_variables_update", {"v": 1}, JobOptions(job_id="again"))
        second = producer.publish("user_variables_update", {"v": 2}, JobOptions(job_id="again"))
    assert first == second == "again"
    twice = broker.capabilities.repeated_id.support is Support.NONE
    drain(broker, rec.handler(), 2 if twice else 1, timeout=10)
    broker.worker(rec.handler()).run(idle_timeout=0.5, timeout=10)  # anything more would run now
    expected = [{"v": 1}, {"v": 2}] if twice else [{"v": 1}]
    assert [s.data for s in rec.seen] == expected, broker.capabilities.repeated_id


@pytest.mark.parametrize("item", [None, ("user_variables_update", {}), "user_variables_update"])
def test_publish_many_with_something_that_is_not_a_jobspec_is_invalid_and_sends_nothing(broker, item):
    with broker.producer() as producer:
        with pytest.raises(InvalidJob, match="JobSpec"):
            producer.publish_many([JobSpec("user_variables_update", {"n": 1}), item])
    assert broker.stats().waiting == 0, "nothing of the call was sent"
