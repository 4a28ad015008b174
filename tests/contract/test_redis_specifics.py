"""Redis-only behaviour of the BullMQ-style adapter: calls sent twice, ids across lanes, errors
that must never escape raw, and fidelity to BullMQ's stalled and paused handling."""

from __future__ import annotations

import time
import uuid

import pytest

from brokers.bullmq_redis.broker import BullMQRedisBroker
from brokers.bullmq_redis.connection import check_version
from brokers.contract import BrokerError, BrokerUnavailable, JobOptions, JobSpec, PublishRejected
from tests.helpers.proxy import ReplyDropProxy
from tests.helpers.recorder import Recorder

FAST = {"lock_duration_ms": 1000, "stalled_interval_ms": 500}


@pytest.fixture
def private_redis(private_brokers):
    return private_brokers.instance("redis", {"appendonly": "no"})


@pytest.fixture
def direct(private_redis):
    broker = BullMQRedisBroker(private_redis.url, queue=f"r-{uuid.uuid4().hex[:8]}")
    yield broker
    broker.purge()
    broker.close()


def _sha(broker: BullMQRedisBroker, script: str) -> bytes:
    """The script's SHA, once Redis has it (else the lost reply would be a NOSCRIPT, nothing done)."""
    for registered in broker.scripts._scripts.values():  # noqa: SLF001
        broker.client.script_load(registered.script)
    return broker.scripts._scripts[script].sha.encode()  # noqa: SLF001


def test_a_settle_whose_reply_was_lost_is_answered_again_not_done_twice(private_redis, direct):
    """The proxy lets moveToFinished run in Redis but loses its reply; redis-py sends the same
    call again. Answered from the first run: the settled jobs count as completed (not as lost
    locks), and the jobs the first run handed out run once (not stranded, then recovered as
    stalled and run again)."""
    proxy = ReplyDropProxy(private_redis.port, private_redis.password)
    through = BullMQRedisBroker(proxy.url, queue=direct.queue)
    try:
        with direct.producer() as producer:
            ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(20)])
        proxy.arm(_sha(through, "moveToFinished"))
        rec = Recorder()
        report = through.worker(rec.handler(), concurrency=4, **FAST).run(max_jobs=20, timeout=30)
        assert proxy.dropped == 1, "the fault happened"
        assert report.completed == 20 and report.lost_lock == 0, report
        time.sleep(1.6)  # a stranded job would now be stalled and handed out again
        direct.worker(rec.handler(), **FAST).run(idle_timeout=1.0, timeout=10)
        assert sorted(rec.ids()) == sorted(ids), "each job ran exactly once"
        assert direct.stats().failed == 0
    finally:
        through.close()
        proxy.close()


def test_an_add_whose_reply_was_lost_adds_nothing_twice(private_redis, direct):
    proxy = ReplyDropProxy(private_redis.port, private_redis.password)
    through = BullMQRedisBroker(proxy.url, queue=direct.queue)
    try:
        proxy.arm(_sha(through, "addJobs"))
        ids = through.producer().publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(10)])
        assert proxy.dropped == 1
        assert len(set(ids)) == 10 and direct.stats().waiting == 10, "no job added twice"
    finally:
        through.close()
        proxy.close()


def test_a_producer_keeps_one_connection_and_survives_its_loss_and_a_flushed_script_cache(private_redis, direct):
    """Each add is one EVALSHA on the producer's own kept connection. That connection killed,
    the next add goes the retried way, reconnects and keeps the new connection; with Redis's
    script cache flushed (a restart), the add loads the script again. Each job is added once."""
    import redis

    admin = redis.Redis.from_url(private_redis.url)

    def producer_connections() -> list[dict]:   # this test's producer's (others of the process left out)
        return [c for c in admin.client_list() if c["name"].startswith("brokerbench:producer:")
                and c["id"] not in before]

    before = {c["id"] for c in admin.client_list()}
    with direct.producer() as producer:
        ids = [producer.publish("user_variables_update", {"n": i}) for i in range(20)]
        kept = producer_connections()
        assert len(kept) == 1, kept
        admin.client_kill_filter(_id=kept[0]["id"])
        ids += [producer.publish("user_variables_update", {"n": i}) for i in range(20, 40)]
        again = producer_connections()
        assert len(again) == 1 and again[0]["id"] != kept[0]["id"], again
        admin.script_flush()
        ids += [producer.publish("user_variables_update", {"n": i}) for i in range(40, 60)]
        assert [c["id"] for c in producer_connections()] == [again[0]["id"]], "NOSCRIPT kept the connection"
    assert len(set(ids)) == 60 and direct.stats().waiting == 60, "every job added once"
    assert producer_connections() == [], "close() closes the producer's connection"


def test_an_add_whose_reply_is_lost_for_good_is_in_doubt_not_refused(private_redis, direct):
    """Redis runs addJobs, its reply is lost, and Redis can no longer be reached: the producer
    cannot know whether the jobs were added. They are in doubt (UnavailableInDoubt, also a
    BrokerUnavailable), not refused: here they were added and run. A custom id names each one;
    resending them with the same ids adds nothing twice."""
    from brokers.contract import Fate, UnavailableInDoubt

    proxy = ReplyDropProxy(private_redis.port, private_redis.password)
    through = BullMQRedisBroker(proxy.url, queue=direct.queue, reconnect_for_s=0.3)
    specs = [JobSpec("user_variables_update", {"n": i}, JobOptions(job_id=f"doubt-{i}")) for i in range(5)]
    try:
        producer = through.producer()
        proxy.arm(_sha(through, "addJobs"), then_refuse=True)
        with pytest.raises(UnavailableInDoubt, match="in doubt") as err:
            producer.publish_many(specs)
        assert isinstance(err.value, BrokerUnavailable)
        assert err.value.fates == [Fate.IN_DOUBT] * 5 and err.value.job_ids == []
        assert err.value.in_doubt == [f"doubt-{i}" for i in range(5)]
        with direct.producer() as again:  # resent with the same ids, once Redis is reachable
            assert again.publish_many(specs) == err.value.in_doubt
        rec = Recorder()
        direct.worker(rec.handler()).run(idle_timeout=0.5, timeout=10)
        assert sorted(rec.ids()) == sorted(err.value.in_doubt), "each ran once: added once, not twice"
    finally:
        through.close()
        proxy.close()


def test_a_plain_outage_before_anything_is_sent_is_not_in_doubt(private_brokers):
    """Nothing listens: no attempt can have delivered the call, so it is a plain
    BrokerUnavailable, not a job in doubt."""
    from brokers.contract import PublishInDoubt
    from brokers.instances import free_port

    broker_port = free_port()
    with pytest.raises(BrokerUnavailable) as err:
        BullMQRedisBroker(f"redis://127.0.0.1:{broker_port}/0", queue="nobody", reconnect_for_s=0.3)
    assert not isinstance(err.value, PublishInDoubt)


def test_a_repeated_custom_id_adds_nothing_while_the_job_exists_and_again_once_removed(direct):
    """BullMQ's rule, declared in capabilities.repeated_id: a second add with an id whose job
    exists returns that id and keeps the first data; once the job completed and was removed
    (remove_on_complete), the same id is a new job."""
    assert "not added again" in direct.capabilities.repeated_id.how
    with direct.producer() as producer:
        first = producer.publish("user_variables_update", {"v": 1}, JobOptions(job_id="same"))
        second = producer.publish("user_variables_update", {"v": 2}, JobOptions(job_id="same"))
        assert first == second == "same" and direct.stats().waiting == 1
        rec = Recorder()
        direct.worker(rec.handler()).run(idle_timeout=0.5, timeout=10)
        assert rec.ids() == ["same"] and rec.seen[0].data == {"v": 1}, "the first data ran, once"
        producer.publish("user_variables_update", {"v": 3}, JobOptions(job_id="same"))
        direct.worker(rec.handler()).run(idle_timeout=0.5, timeout=10)
        assert rec.ids() == ["same", "same"] and rec.seen[1].data == {"v": 3}


def test_job_ids_are_unique_across_lanes(private_redis):
    broker = BullMQRedisBroker(private_redis.url, queue=f"lanes-{uuid.uuid4().hex[:6]}",
                               routes={"heavy_workflow_execution": "heavy"})
    try:
        with broker.producer() as producer:
            ids = [producer.publish(name, {"n": i}) for i in range(5)
                   for name in ("heavy_workflow_execution", "user_variables_update")]
        assert len(set(ids)) == len(ids), ids
    finally:
        broker.purge()
        broker.close()


@pytest.fixture
def replica(private_brokers, private_redis):
    """A replica of the private Redis: it answers writes with READONLY, as an old primary does
    after a failover."""
    node = private_brokers.instance("redis", {"replicaof": f"127.0.0.1 {private_redis.port}",
                                              "replica-read-only": "yes"})
    return node


def test_a_read_only_redis_gives_a_clear_error_not_a_raw_one(replica, direct):
    broker = BullMQRedisBroker(replica.url, queue=direct.queue, reconnect_for_s=1.0)
    try:
        with pytest.raises(BrokerUnavailable, match="ReadOnlyError.*read only replica"):
            broker.producer().publish("user_variables_update", {})
        with pytest.raises(BrokerUnavailable, match="ReadOnlyError.*read only replica"):
            broker.worker(lambda job: None).run(timeout=10)
    finally:
        broker.close()


def test_a_script_error_never_escapes_raw(direct):
    """A queue key of the wrong type (written by hand, or another program) makes the scripts
    fail: the producer is refused with Redis's words, the worker ends with BrokerUnavailable."""
    direct.client.set(direct.lane_keys["default"].wait, "not a list")
    with pytest.raises(PublishRejected, match="WRONGTYPE"):
        direct.producer().publish("user_variables_update", {})
    worker = BullMQRedisBroker(direct.url, queue=direct.queue, reconnect_for_s=1.0).worker(lambda job: None)
    with pytest.raises(BrokerUnavailable, match="WRONGTYPE"):
        worker.run(timeout=10)


def test_redis_older_than_7_is_refused_with_a_clear_error():
    with pytest.raises(BrokerError, match="version 6.2.14.*needs Redis 7.0"):
        check_version("redis://:secret@host:1/0", "6.2.14")
    check_version("redis://host:1/0", "7.0.15")
    check_version("redis://host:1/0", "unknown")


def _stall(broker: BullMQRedisBroker, lane: str = "default") -> None:
    """A worker takes every ready job and dies: locks of 100 ms, never renewed; two stalled
    checks later, the jobs are recovered."""
    keys = broker.lane_keys[lane]
    broker.scripts.call("moveToActive", keys, int(time.time() * 1000), [100, "dead:1", 100, "dead"])
    for _ in range(2):
        time.sleep(0.25)
        broker.scripts.call("moveStalledJobsToWait", keys, int(time.time() * 1000), [0, 100])


def test_a_job_failed_for_stalling_follows_its_remove_on_fail(direct):
    with direct.producer() as producer:
        gone = producer.publish("user_variables_update", {}, JobOptions(remove_on_fail=True))
    _stall(direct)
    assert direct.stats().failed == 0 and not direct.job_hash(gone), "removed, as removeOnFail says"
    with direct.producer() as producer:
        kept = producer.publish("user_variables_update", {})
    _stall(direct)
    assert [f.id for f in direct.failed_jobs()] == [kept]


def test_a_stalled_prioritized_job_goes_to_the_head_as_in_bullmq(direct):
    with direct.producer() as producer:
        first = producer.publish("user_variables_update", {"n": 0}, JobOptions(priority=5))
    keys = direct.lane_keys["default"]
    direct.scripts.call("moveToActive", keys, int(time.time() * 1000), [1, "dead:1", 100, "dead"])
    with direct.producer() as producer:
        later = [producer.publish("user_variables_update", {"n": i}, JobOptions(priority=5)) for i in (1, 2)]
    for _ in range(2):
        time.sleep(0.25)
        direct.scripts.call("moveStalledJobsToWait", keys, int(time.time() * 1000), [1, 100])
    rec = Recorder()
    direct.worker(rec.handler()).run(max_jobs=3, timeout=10)
    assert rec.ids() == [first] + later, "the stalled job runs first: it has waited long enough"


def test_jobs_an_older_bullmq_parked_in_its_paused_list_are_run(direct):
    with direct.producer() as producer:
        ids = producer.publish_many([JobSpec("user_variables_update", {"n": i}) for i in range(3)])
    keys = direct.lane_keys["default"]
    direct.client.rename(keys.wait, keys.paused)  # what BullMQ's pause did before v5
    assert direct.stats().waiting == 3, "parked jobs still count as waiting"
    rec = Recorder()
    direct.worker(rec.handler()).run(max_jobs=3, timeout=10)
    assert sorted(rec.ids()) == sorted(ids)


def _slot(key: str) -> int:
    """Redis Cluster's hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def test_a_hash_tag_prefix_puts_every_key_of_a_call_in_one_slot(private_redis):
    from brokers.bullmq_redis.scripts import Calls, queue_keys

    broker = BullMQRedisBroker(private_redis.url, queue="tagged", prefix="{bull}",
                               routes={"heavy_workflow_execution": "heavy"})
    try:
        calls = Calls("w")
        for lane, keys in broker.lane_keys.items():
            call = calls.new(keys)
            every = queue_keys(keys) + [call.key, broker.lane_keys["default"].id, keys.job("7"), keys.lock("7")]
            assert {_slot(k) for k in every} == {_slot("bull")}, lane
        rec = Recorder()
        with broker.producer() as producer:
            producer.publish("heavy_workflow_execution", {"n": 1})
        broker.worker(rec.handler()).run(max_jobs=1, timeout=10)
        assert len(rec.ids()) == 1
    finally:
        broker.purge()
        broker.close()


def test_a_busy_worker_takes_new_jobs_the_moment_they_come(direct):
    """While a long job runs and a slot is free, the worker blocks on the marker (as BullMQ's
    does): a job published meanwhile starts at once, not at the next poll."""
    starts: dict[str, float] = {}

    def handle(job):
        starts[job.id] = time.monotonic()
        if job.data.get("long"):
            time.sleep(3)

    worker = direct.worker(handle, concurrency=2)
    thread = worker.start_in_thread(max_jobs=6, timeout=30)
    lags = []
    with direct.producer() as producer:
        producer.publish("user_variables_update", {"long": True})
        time.sleep(0.3)
        for i in range(5):
            sent = time.monotonic()
            job_id = producer.publish("user_variables_update", {"n": i})
            deadline = time.monotonic() + 2
            while job_id not in starts and time.monotonic() < deadline:
                time.sleep(0.001)
            lags.append(starts.get(job_id, 99) - sent)
            time.sleep(0.06)
    thread.join(timeout=30)
    assert max(lags) < 0.05, f"each new job started within 50 ms, not at a 200 ms poll: {lags}"
