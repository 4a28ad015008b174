"""The bridge's producer sends ahead (a window of unanswered jobs) and still gives every job
exactly one outcome: accepted (with the role's time), refused, or in doubt. A scripted role
stands in for the program, so each answer's timing is ours to choose."""

from __future__ import annotations

import queue
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.contenders.bridge import ContenderProducer, RoleFailed
from brokers.contract import Fate, JobOptions, JobSpec, PublishInDoubt, PublishRejected, UnavailableInDoubt


class ScriptedRole:
    """Records what the producer sends; answers only when a test says so (``answer``)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.inbox: queue.Queue = queue.Queue()
        self.client = SimpleNamespace(label="scripted")
        self.proc = SimpleNamespace(kill=lambda: None)
        self.ended = False

    def send(self, message: dict[str, Any]) -> None:
        if self.ended:
            raise RoleFailed("scripted: it ended")
        self.sent.append(message)

    def receive(self, timeout: float) -> dict[str, Any] | None:
        try:
            item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self.inbox.put(None)
            raise RoleFailed("scripted: it ended")
        return item

    def answer(self, seqs: list[int], fate: str = "accepted", t_ns: int = 123) -> None:
        if fate == "accepted":
            self.inbox.put({"type": "accepted", "seqs": seqs, "ids": [f"b{s}" for s in seqs], "t_ns": t_ns})
        else:
            self.inbox.put({"type": "failed", "seqs": seqs, "fate": fate, "error": f"{fate} by the test"})

    def seqs_sent(self) -> list[int]:
        return [job["seq"] for m in self.sent if m["type"] == "publish" for job in m["jobs"]]


def _producer(window: int = 100) -> tuple[ContenderProducer, ScriptedRole, list[tuple[list[str], int]]]:
    role = ScriptedRole()
    producer = ContenderProducer(role, window=window)  # type: ignore[arg-type]
    accepted: list[tuple[list[str], int]] = []
    producer.on_accepted = lambda ids, when=None: accepted.append((ids, when))
    return producer, role, accepted


def _spec(job_id: str | None = None) -> JobSpec:
    return JobSpec("user_variables_update", {"k": 1}, JobOptions(job_id=job_id))


def test_calls_return_before_their_answers_and_acceptances_carry_the_roles_time():
    producer, role, accepted = _producer()
    ids = [producer.publish("user_variables_update", {"k": i}) for i in range(3)]
    assert ids == ["#0", "#1", "#2"] and role.seqs_sent() == [0, 1, 2], "sent ahead, each call its own line"
    assert producer.publish_many([_spec("mine")]) == ["mine"], "a custom id is the job's id"
    assert accepted == []
    role.answer([0, 1], t_ns=7)
    role.answer([2, 3], t_ns=9)
    producer.flush()
    assert accepted == [(["#0", "#1"], 7), (["#2", "mine"], 9)]


def test_a_full_window_waits_for_answers_before_sending_more():
    producer, role, accepted = _producer(window=2)
    producer.publish_many([_spec(), _spec()])
    role.answer([0])
    producer.publish_many([_spec()])  # one answered: room for one
    assert role.seqs_sent() == [0, 1, 2]
    with pytest.raises(UnavailableInDoubt) as raised:  # no answer, and the role then ends
        role.inbox.put(None)
        producer.publish_many([_spec()])
    assert sorted(raised.value.in_doubt) == ["#1", "#2"], "sent and unanswered: in doubt"
    assert raised.value.fates == [Fate.REFUSED], "the call that could not be sent: refused"
    assert role.seqs_sent() == [0, 1, 2]


def test_a_refusal_is_raised_by_the_next_call_which_sends_nothing():
    producer, role, accepted = _producer()
    producer.publish_many([_spec(), _spec()])
    role.answer([0])
    role.answer([1], fate="refused")
    producer.idle(0.05)  # reads both answers; raises nothing itself
    with pytest.raises(PublishRejected) as raised:
        producer.publish_many([_spec(), _spec()])
    assert raised.value.job_ids == ["#1"] and raised.value.in_doubt == []
    assert raised.value.fates == [Fate.REFUSED, Fate.REFUSED] and role.seqs_sent() == [0, 1]
    assert accepted == [(["#0"], 123)]
    assert producer.publish_many([_spec()]) == ["#2"], "and the producer goes on"


def test_a_doubt_is_raised_by_flush():
    producer, role, accepted = _producer()
    producer.publish_many([_spec(), _spec()])
    role.answer([0], fate="in_doubt")
    role.answer([1])
    with pytest.raises(PublishInDoubt) as raised:
        producer.flush()
    assert not isinstance(raised.value, UnavailableInDoubt)
    assert raised.value.in_doubt == ["#0"] and raised.value.fates is None
    assert accepted == [(["#1"], 123)]


def test_a_role_that_ends_leaves_every_unanswered_job_in_doubt():
    producer, role, accepted = _producer()
    producer.publish_many([_spec(), _spec(), _spec()])
    role.answer([0], fate="in_doubt")
    role.answer([1])
    role.inbox.put(None)  # the role ends with #2 unanswered
    with pytest.raises(UnavailableInDoubt) as raised:
        producer.flush()
    assert sorted(raised.value.in_doubt) == ["#0", "#2"] and raised.value.fates == []
    assert accepted == [(["#1"], 123)]
