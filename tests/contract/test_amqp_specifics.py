"""RabbitMQ-only behaviour of the AMQP adapter: topology repairs itself, confirm modes."""

from __future__ import annotations

import threading
import time

import pytest

from brokers import registry
from brokers.contract import JobOptions, JobSpec
from tests.helpers.recorder import Recorder


def test_a_deleted_delay_queue_does_not_lose_delayed_jobs(make_broker):
    broker = make_broker("rabbitmq")
    producer = broker.producer()
    producer.publish("user_variables_update", {"n": 1}, JobOptions(delay_ms=300))
    producer.flush()
    # Someone deletes the delay level a 300 ms delay (304 after rounding) enters first (256 ms)
    # while the producer still thinks it exists:
    broker._admin_call(lambda ch: ch.queue_delete(broker.topology.delay_level(8)))
    second = producer.publish("user_variables_update", {"n": 2}, JobOptions(delay_ms=300))
    producer.flush()  # the unroutable copy came back; it is sent again after a re-declare
    producer.close()
    rec = Recorder()
    broker.worker(rec.handler()).run(idle_timeout=2.0, timeout=20)
    assert second in rec.ids(), "the job published while its delay queue was gone still ran"


@pytest.mark.parametrize("confirms", ["off", "each", "windowed"])
def test_every_confirm_mode_delivers_and_reports_acceptance(make_broker, confirms):
    broker = make_broker("rabbitmq")
    accepted: list[str] = []
    producer = broker.producer(confirms=confirms, window=8)
    producer.on_accepted = accepted.extend
    ids = [producer.publish("user_variables_update", {"n": i}) for i in range(40)]
    producer.flush()
    producer.close()
    assert sorted(accepted) == sorted(ids)
    deadline = time.monotonic() + 5
    while broker.stats().waiting < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.stats().waiting == 40


# -------------------------------------------------- channel errors are not outages (issue: bad input)


def test_a_message_the_broker_refuses_fails_at_once_with_its_reason_and_the_producer_goes_on(private_brokers):
    """A broker whose max_message_size (1 MiB here) is below our own check's limit closes the
    channel (406): that publish fails at once naming the reason, not as an outage, and the
    producer keeps working. If an earlier job was still unconfirmed on that channel, the producer
    cannot tell which of the two the broker queued before it closed: both are in doubt, not
    refused (the earlier one runs); if its confirm came first, the big one alone is refused."""
    from brokers.amqp.broker import RabbitMQBroker
    from brokers.contract import Fate, PublishFailed, PublishRejected

    node = private_brokers.default_instance("rabbitmq")
    node.ctl("eval", "application:set_env(rabbit, max_message_size, 1048576).")
    try:
        broker = RabbitMQBroker(node.url, queue="too-big", max_job_bytes=None)
        producer = broker.producer()
        earlier = producer.publish("user_variables_update", {"n": 0})  # in the window, not yet confirmed
        started = time.monotonic()
        confirmed: list[str] = []
        producer.on_accepted = confirmed.extend
        with pytest.raises(PublishFailed, match="406.*larger than") as err:
            producer.publish("statistics_aggregation", {"blob": "z" * 2_000_000})
            producer.flush()
        assert time.monotonic() - started < 5, "at once, not after a 30 s confirm timeout"
        assert err.value.accepted in ([None], None), "the big one is never called accepted"
        assert earlier not in err.value.job_ids, "a job sent before the culprit is never called refused"
        if earlier in confirmed:  # its confirm came before the close: only the big one was unconfirmed
            assert isinstance(err.value, PublishRejected) and err.value.fates in ([Fate.REFUSED], None)
        else:
            assert earlier in err.value.in_doubt and err.value.fates in ([Fate.IN_DOUBT], None)
        rec = Recorder()
        after = producer.publish("user_variables_update", {"n": 1})
        producer.flush()
        broker.worker(rec.handler()).run(idle_timeout=1.0, timeout=20)
        assert after in rec.ids(), "the producer kept working on a new channel"
        assert not set(err.value.job_ids) & set(rec.ids()), "refused jobs never ran"
        producer.close()
        broker.purge()
        broker.close()
    finally:
        node.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")


def test_an_exchange_deleted_under_a_producer_fails_that_publish_then_is_declared_again(make_broker):
    from brokers.contract import PublishRejected

    broker = make_broker("rabbitmq")
    producer = broker.producer()
    producer.publish("user_variables_update", {"n": 0})
    producer.flush()
    broker._admin_call(lambda ch: ch.exchange_delete(broker.topology.exchange))
    started = time.monotonic()
    with pytest.raises(PublishRejected, match="404") as err:
        refused = producer.publish("user_variables_update", {"n": 1})
        producer.flush()
    assert time.monotonic() - started < 5
    assert err.value.job_ids == [refused], "the caller is told which jobs it still owns"
    again = producer.publish("user_variables_update", {"n": 2})
    producer.flush()
    rec = Recorder()
    broker.worker(rec.handler()).run(idle_timeout=1.0, timeout=20)
    assert again in rec.ids() and refused not in rec.ids()


def test_a_dead_letter_exchange_deleted_under_a_worker_does_not_stop_it_or_lose_the_job(make_broker):
    broker = make_broker("rabbitmq")
    rec = Recorder()
    with broker.producer() as producer:
        bad = producer.publish("user_variables_update", {"fail": True})
        good = producer.publish("user_variables_update", {"fail": False})
    broker._admin_call(lambda ch: ch.exchange_delete(broker.topology.dead_exchange))
    report = broker.worker(rec.handler(fail=lambda job: job.data["fail"])).run(max_jobs=2, timeout=30)
    assert report.failed == 1 and report.completed == 1
    assert [f.id for f in broker.failed_jobs()] == [bad], "the dead letter landed after the exchange came back"
    assert good in rec.ids()


def test_ten_thousand_random_delays_make_no_more_than_a_few_dozen_queues(private_brokers):
    """Counted by the broker itself (rabbitmqctl list_queues on a private node)."""
    import random

    from brokers.amqp.broker import RabbitMQBroker

    node = private_brokers.default_instance("rabbitmq")
    broker = RabbitMQBroker(node.url, queue="many-delays")
    rng = random.Random(9)
    with broker.producer() as producer:
        for start in range(0, 10_000, 500):
            producer.publish_many([JobSpec("user_variables_update", {"i": i},
                                           JobOptions(delay_ms=rng.randint(250, 3000)))
                                   for i in range(start, start + 500)])
    names = [line.split("\t")[0] for line in node.ctl("list_queues", "name", "-q", "--no-table-headers").stdout
             .splitlines() if line.startswith("many-delays.")]
    delay_queues = [n for n in names if ".delay" in n]
    assert 0 < len(delay_queues) <= 28, delay_queues
    seen: set[int] = set()
    worker = broker.worker(lambda job: seen.add(job.data["i"]), concurrency=8, prefetch=64)
    worker.run(max_jobs=10_000, timeout=60)
    assert seen == set(range(10_000)), "every delayed job arrived"
    broker.purge()
    broker.close()


# ------------------------------------------------------------------------ loss you cannot miss


def test_delayed_jobs_wait_for_room_in_a_full_lane_instead_of_vanishing(private_brokers):
    """Jobs leave a delay level by dead-lettering; into a bounded lane (reject-publish) that is
    full, at-most-once dead-lettering would drop them unseen. They must wait for room instead.
    (RabbitMQ offers a refused dead letter again after dead_letter_worker_publisher_confirm_timeout,
    2 minutes by default; this private node is told 1 s.)"""
    from brokers.amqp.broker import RabbitMQBroker

    node = private_brokers.default_instance("rabbitmq")
    node.ctl("eval", "application:set_env(rabbit, dead_letter_worker_publisher_confirm_timeout, 1000).")
    broker = RabbitMQBroker(node.url, queue="full-lane", max_length=5)
    try:
        with broker.producer() as producer:
            ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}, JobOptions(delay_ms=50))
                                         for i in range(30)])
        time.sleep(1.0)  # every delay is over: 5 jobs fit the lane, 25 must still be somewhere
        assert broker.stats().waiting == 5
        rec = Recorder()
        broker.worker(rec.handler(), concurrency=4).run(max_jobs=30, timeout=60)
        assert sorted(rec.ids()) == sorted(ids), "no delayed job vanished"
    finally:
        broker.purge()
        broker.close()
        node.ctl("eval", "application:set_env(rabbit, dead_letter_worker_publisher_confirm_timeout, 120000).")


def test_an_alarm_blocks_retry_copies_not_the_acks_of_other_jobs(private_brokers):
    """Copies go out on a connection of their own: under a memory alarm RabbitMQ blocks it (the
    copy waits, its original held), while the consuming connection keeps acknowledging jobs
    that completed. On one shared connection the acks would stop behind the blocked publish."""
    from brokers.amqp.broker import RabbitMQBroker

    node = private_brokers.default_instance("rabbitmq")
    broker = RabbitMQBroker(node.url, queue="alarm-copies")
    rec = Recorder()
    try:
        with broker.producer() as producer:
            retried = producer.publish("user_variables_update", {"fail": True}, JobOptions(attempts=2))
            others = [producer.publish("user_variables_update", {"fail": False}) for _ in range(5)]
        node.ctl("set_vm_memory_high_watermark", "absolute", "1")  # an alarm now: publishers are blocked
        worker = broker.worker(rec.handler(fail=lambda job: job.data["fail"] and job.attempts_made == 0),
                               concurrency=2, prefetch=8)
        thread = worker.start_in_thread(max_jobs=7, timeout=60)
        deadline = time.monotonic() + 15
        unacked = None
        while time.monotonic() < deadline:
            rows = dict(line.split("\t")[:2] for line in node.ctl(
                "list_queues", "name", "messages_unacknowledged", "-q", "--no-table-headers").stdout.splitlines()
                if line.startswith("alarm-copies.default"))
            unacked = int(rows.get("alarm-copies.default", "-1"))
            if set(others) <= set(rec.ids()) and unacked == 1:
                break
            time.sleep(0.2)
        assert set(others) <= set(rec.ids()) and unacked == 1, \
            f"jobs that completed were acked during the alarm; only the retried one is held ({unacked} unacked)"
        node.ctl("set_vm_memory_high_watermark", "0.4")  # the alarm clears: the copy is confirmed
        thread.join(timeout=40)
        assert rec.ids().count(retried) == 2 and worker.report.completed == 6 and worker.report.retried == 1
    finally:
        node.ctl("set_vm_memory_high_watermark", "0.4")
        broker.purge()
        broker.close()


def test_jobs_given_back_after_a_confirm_timeout_are_in_doubt_not_refused(private_brokers):
    """A memory alarm holds confirms past the producer's timeout: the jobs waiting in the window
    are given back in doubt (PublishInDoubt.in_doubt), not refused: they were sent, and the
    broker may queue them once the alarm clears. The producer neither reports them accepted
    later (the caller owns them now) nor sends them again."""
    from brokers.amqp.broker import RabbitMQBroker
    from brokers.contract import PublishInDoubt

    node = private_brokers.default_instance("rabbitmq")
    broker = RabbitMQBroker(node.url, queue="given-back")
    accepted: list[str] = []
    try:
        producer = broker.producer(confirm_timeout_s=1.5)
        producer.on_accepted = accepted.extend
        node.ctl("set_vm_memory_high_watermark", "absolute", "1")
        ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(5)])  # in flight
        with pytest.raises(PublishInDoubt, match="no publisher confirm") as err:
            producer.flush()
        assert err.value.in_doubt == ids and err.value.job_ids == []
        node.ctl("set_vm_memory_high_watermark", "0.4")
        later = producer.publish("user_variables_update", {"n": 99})
        producer.flush()
        assert accepted == [later], "the given-back jobs are never reported accepted"
        assert producer.republished == 0
        producer.close()
    finally:
        node.ctl("set_vm_memory_high_watermark", "0.4")
        broker.purge()
        broker.close()


def test_a_confirm_timeout_comes_on_time_while_a_blocked_broker_leaves_output_unsent(private_brokers):
    """A memory alarm: RabbitMQ stops reading from publishing connections, so once the socket
    buffers are full the producer's output stays unsent. The producer's wait for confirms must
    still end at its timeout (in doubt), not when the alarm clears (pika's own wait loop cannot
    end while output is unsent); so must idle()."""
    from brokers.amqp.broker import RabbitMQBroker
    from brokers.contract import PublishInDoubt

    node = private_brokers.default_instance("rabbitmq")
    broker = RabbitMQBroker(node.url, queue="blocked-output")
    clear = registry.get("rabbitmq").memory_alarm.hold(node)
    clearer = threading.Timer(30.0, clear)
    try:
        producer = broker.producer(confirm_timeout_s=1.5)
        blob = "b" * 1_000_000
        started = time.monotonic()
        ids = producer.publish_many([JobSpec("statistics_aggregation", {"blob": blob, "n": i}) for i in range(40)])
        assert time.monotonic() - started < 12, "within its window the call returns (in flight), unsent or not"
        with pytest.raises(PublishInDoubt, match="no publisher confirm") as err:
            producer.flush()
        assert time.monotonic() - started < 15, "the timeout came on time, not when the alarm cleared"
        assert err.value.in_doubt == ids
        started = time.monotonic()
        producer.idle(0.5)
        assert time.monotonic() - started < 3, "idle() returns on time with output unsent"
        clearer.start()
    finally:
        clearer.cancel()
        clear()
        broker.purge()
        broker.close()


def test_remove_leaves_no_queue_or_exchange_behind_purge_declares_them_again(make_broker):
    """A test or benchmark that is done with its queue removes it: the shared broker keeps no
    empty queues of ours (they cost the broker CPU while idle); purge keeps the queue usable."""
    import pika

    broker = make_broker("rabbitmq")
    with broker.producer() as producer:
        producer.publish("user_variables_update", {}, JobOptions(delay_ms=60_000))
    names = broker.topology.all_queues()

    def exists(name: str) -> bool:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            connection.channel().queue_declare(name, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if connection.is_open:
                connection.close()

    broker.purge()
    assert all(exists(n) for n in names), "purge declares the queues again, empty"
    broker.remove()
    assert not any(exists(n) for n in names), "remove leaves none behind"


# --------------------------------------------------------------------- our own names


@pytest.mark.parametrize("lane", ["dead", "dlx", "unrouted", "delay-04", "delay-31"])
def test_a_lane_named_like_the_adapters_own_queues_is_refused_naming_the_clash(lane):
    """A lane called "dead" would be the dead-letter queue (RabbitMQ then refused the declaration
    with advice to purge); refused before anything is declared, saying which object it clashes
    with (no broker needed: the URL is never dialled)."""
    from brokers.amqp.broker import RabbitMQBroker

    with pytest.raises(ValueError, match=rf"lane '{lane}' would be the queue 'jobs\.{lane}'.*reserved"):
        RabbitMQBroker("amqp://guest:guest@127.0.0.1:1/%2F", queue="jobs", routes={"report": lane})


# ------------------------------------------------------------------------- nothing invisible


def test_a_delayed_job_held_for_a_full_lane_is_counted_while_it_is_held(private_brokers):
    """The probe of the issue: lane bounded at 2 and full, a delayed job published. Its delay
    level's TTL passes, the full lane refuses it, and the level (a quorum queue, at-least-once
    dead-lettering) holds it until the lane takes it. AMQP's counts (ready messages) show it
    nowhere; stats() with the node, and held(), count it as delayed while it is held. It then
    runs once the lane has room (RabbitMQ offers it again after
    dead_letter_worker_publisher_confirm_timeout: 1 s on this private node while the test runs)."""
    import uuid

    from brokers.amqp.broker import RabbitMQBroker

    node = private_brokers.default_instance("rabbitmq")
    restore = getattr(node, "dead_letter_confirm_timeout_ms", 180_000)
    node.ctl("eval", "application:set_env(rabbit, dead_letter_worker_publisher_confirm_timeout, 1000).")
    broker = RabbitMQBroker(node.url, queue=f"held-{uuid.uuid4().hex[:8]}", max_length=2, node=node)
    amqp_only = RabbitMQBroker(node.url, queue=broker.queue, max_length=2)
    try:
        with broker.producer() as producer:
            ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(2)])
            ids.append(producer.publish("user_variables_update", {"n": 2}, JobOptions(delay_ms=50)))
        deadline = time.monotonic() + 10
        while broker.node_counts()[broker.topology.delay_level(6)].dead_lettering == 0:  # 50 ms: level 6 (64 ms)
            assert time.monotonic() < deadline, "the delayed job was never held by its delay level"
            time.sleep(0.2)
        counted = broker.stats()
        assert (counted.waiting, counted.active, counted.delayed) == (2, 0, 1), counted
        assert broker.held() == 3
        seen = amqp_only.stats()
        assert (seen.waiting, seen.delayed, seen.active) == (2, 0, None), "AMQP alone cannot see it (the finding)"
        rec = Recorder()
        broker.worker(rec.handler()).run(max_jobs=3, timeout=40)
        assert sorted(rec.ids()) == sorted(ids), "the held job ran once the lane had room"
        assert broker.held() == 0
    finally:
        amqp_only.close()
        broker.remove()
        broker.close()
        node.ctl("eval", f"application:set_env(rabbit, dead_letter_worker_publisher_confirm_timeout, {restore}).")


def test_a_channel_the_broker_closes_under_a_running_job_is_reopened_at_once_and_that_run_counts_lost(make_broker):
    """RabbitMQ closes a consumer's channel while its connection lives (consumer_timeout, a
    precondition failed) and requeues what it held unacked. The worker must open a new channel at
    once (not idle until the running job's ack fails), and the run whose ack can no longer be
    sent is counted lost_lock, never completed. The close is caused here by an ack of a tag the
    channel never delivered (406 PRECONDITION_FAILED, from the broker's side, as a timeout is)."""
    broker = make_broker("rabbitmq")
    producer = broker.producer()
    first = producer.publish("workflow_execution", {"n": 1})
    producer.flush()
    holding, release = threading.Event(), threading.Event()
    runs: list[tuple[str, bool]] = []

    def handler(job):
        runs.append((job.id, job.redelivered))
        if job.id == first and not job.redelivered:
            holding.set()
            release.wait(30)

    worker = broker.worker(handler, concurrency=2)
    report: list = []
    thread = threading.Thread(target=lambda: report.append(worker.run(timeout=40)), daemon=True)
    thread.start()
    try:
        assert holding.wait(10), "the first job never started"
        worker._conn.add_callback_threadsafe(lambda: worker._ch.basic_ack(10_000))  # noqa: SLF001

        def ran(run: tuple[str, bool]) -> bool:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and run not in runs:
                time.sleep(0.05)
            return run in runs

        assert ran((first, True)), f"the requeued job did not run again while its first run held: {runs}"
        second = producer.publish("workflow_execution", {"n": 2})
        producer.flush()
        assert ran((second, False)), f"a job published after the reopen did not run: {runs}"
    finally:
        release.set()
        time.sleep(0.3)
        worker.stop()
        thread.join(20)
        producer.close()
    assert report, "the worker did not stop"
    # the first run of the first job (its ack could not be sent): lost; its second run and the
    # second job: completed; nothing else ran
    assert (report[0].completed, report[0].lost_lock) == (2, 1), (report[0], runs)
    assert len(runs) == 3, runs
