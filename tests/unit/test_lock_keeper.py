"""A Redis worker warns of a lost lock only when it lost one, not when a job settled while its
locks were being renewed (the settlement deletes the lock; the renewal then finds it gone)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from brokers.bullmq_redis.locks import LockKeeper


def _keeper(on_call):
    broker = SimpleNamespace(scripts=SimpleNamespace(call=on_call), lane_keys={"default": "keys"})
    return LockKeeper(broker, "w1", ["default"], lock_duration_ms=1000, stalled_interval_ms=1000,
                      max_stalled_count=1)


def test_a_job_settled_during_the_renewal_is_not_reported_lost(caplog):
    def renew(script, keys, now, args):
        keeper.release("default", ["7"])  # the worker settles job 7 while the script runs
        return [b"7"]

    keeper = _keeper(renew)
    keeper.hold("default", "7", "token-7")
    keeper.hold("default", "8", "token-8")
    with caplog.at_level(logging.WARNING):
        keeper.extend_locks()
    assert "lost the lock" not in caplog.text
    assert ("default", "8") in keeper._held


def test_a_job_still_held_whose_lock_is_gone_is_reported_once_and_released(caplog):
    keeper = _keeper(lambda script, keys, now, args: [b"8"])
    keeper.hold("default", "8", "token-8")
    with caplog.at_level(logging.WARNING):
        keeper.extend_locks()
        keeper.extend_locks()
    assert caplog.text.count("lost the lock of job 8") == 1
    assert ("default", "8") not in keeper._held


def test_a_job_taken_again_under_a_new_token_is_not_reported_for_the_old_one(caplog):
    def renew(script, keys, now, args):
        keeper.hold("default", "9", "token-new")  # settled and taken again while the script ran
        return [b"9"]

    keeper = _keeper(renew)
    keeper.hold("default", "9", "token-old")
    with caplog.at_level(logging.WARNING):
        keeper.extend_locks()
    assert "lost the lock" not in caplog.text
    assert keeper._held[("default", "9")] == "token-new"


def test_a_job_whose_settlement_is_on_its_way_is_not_reported_lost_and_is_renewed_until_released(caplog):
    seen: list[list] = []

    def renew(script, keys, now, args):
        seen.append(list(args))
        return [b"7"]  # the settlement reached Redis first and deleted the lock; its reply has not

    keeper = _keeper(renew)
    keeper.hold("default", "7", "token-7")
    keeper.settling("default", ["7"])
    with caplog.at_level(logging.WARNING):
        keeper.extend_locks()
    assert "lost the lock" not in caplog.text
    assert "7" in seen[0] and ("default", "7") in keeper._held, "renewed until the settlement is answered"
    keeper.release("default", ["7"])
    assert ("default", "7") not in keeper._held and not keeper._settling
