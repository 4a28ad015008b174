"""Bad input never breaks a producer or a worker: property-based tests over every registered adapter.

A hypothesis state machine drives one producer and short worker runs on each adapter with
random job names (empty, long, non-text, unpaired surrogates), payloads (deep, wide, unicode,
large, values JSON cannot hold), options (delays, priorities, attempts, backoff, ids, in and out
of range) and raw malformed messages, in random interleavings. The invariant:

* every call returns, or raises a documented error (InvalidJob, PublishRejected) and nothing
  else, and raises exactly when the input breaks a documented rule;
* a job whose call returned is delivered (at least once) with exactly its name and its data's
  JSON round trip; a long-delayed one is held (stats().delayed counts it); nothing arrives
  that was not accepted;
* a malformed message is failed, and the worker goes on; the producer stays usable.

Budget: ``BROKERBENCH_FUZZ=ci`` (the default: 200 examples per adapter, no example database)
or ``long`` (2,000 examples, failures remembered in .hypothesis/).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from brokers import registry
from brokers.contract import (
    MAX_DEPTH,
    MAX_NAME_BYTES,
    Backoff,
    Broker,
    InvalidJob,
    JobOptions,
    JobSpec,
    Producer,
    PublishRejected,
)
from brokers.provision import find

settings.register_profile("ci", max_examples=200, stateful_step_count=8, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("long", max_examples=2000, stateful_step_count=15, deadline=None,
                          suppress_health_check=list(HealthCheck))
PROFILE = settings.get_profile(os.environ.get("BROKERBENCH_FUZZ", "ci"))

MAX_JOB_BYTES = 65_536  # small, so that "large" payloads cross it cheaply
SOON_MS = 60            # accepted jobs delayed at most this long are expected delivered in the run
HELD_MS = 86_400_000    # accepted jobs delayed at least this long are expected held


# ---------------------------------------------------------------------------------- strategies
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(max_size=30) | st.text(st.characters() | surrogates, max_size=12)
names = (st.sampled_from(["user_variables_update", "heavy_workflow_execution", "statistics_aggregation"])
         | texts | st.text(min_size=120, max_size=140)  # 120-140 characters: around 255 bytes in UTF-8
         | st.integers() | st.none())
leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
          | st.floats() | texts)
json_like = st.recursive(leaves, lambda inner: st.lists(inner, max_size=6)
                         | st.dictionaries(texts, inner, max_size=6), max_leaves=30)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


payloads = st.one_of(
    json_like,
    st.dictionaries(st.text(max_size=8), json_like, max_size=4),              # a typical object
    st.integers(MAX_DEPTH - 20, MAX_DEPTH + 40).map(_nested),                 # deep, around the limit
    st.integers(1, 20_000).map(lambda n: list(range(n))),                     # wide
    st.integers(MAX_JOB_BYTES - 100, MAX_JOB_BYTES + 100).map(lambda n: "w" * n),  # large, around the limit
    st.sampled_from([{1, 2}, b"bytes", object(), {"when": object()}, {"nan": math.nan}, {(1, 2): "tuple key"}]),
)
delays = st.one_of(st.just(0), st.integers(0, SOON_MS), st.integers(HELD_MS, 2**32 - 1),  # ends past the limit
                   st.integers(2**32, 2**40), st.integers(-5, -1), st.booleans(), st.floats(0, 10))
backoffs = st.one_of(st.none(), st.builds(lambda kind, ms: (kind, ms), st.sampled_from(["fixed", "exponential", "x"]),
                                          st.integers(-1, 2**33)))
options = st.fixed_dictionaries({}, optional={
    "delay_ms": delays, "priority": st.integers(-1, 11) | st.booleans(),
    "attempts": st.integers(-1, 4) | st.just(2**40),
    "backoff": backoffs, "job_id": st.one_of(st.just("custom"), st.just("123"), st.just("a:b"), st.just(""),
                                             st.text(min_size=1, max_size=10)),
    "remove_on_complete": st.booleans() | st.integers(-1, 3), "remove_on_fail": st.booleans() | st.integers(-1, 3)})


# ------------------------------------------------------------------------------------- oracle
def _utf8_bytes(text: str) -> int | None:
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None


def _depth(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def documented_refusal(name: Any, data: Any) -> bool:
    """True when the contract says this job must be refused with InvalidJob (options are
    checked when JobOptions is built)."""
    if not isinstance(name, str) or not name or (_utf8_bytes(name) or MAX_NAME_BYTES + 1) > MAX_NAME_BYTES:
        return True
    try:
        if _depth(data) > MAX_DEPTH:
            return True
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return True
    return len(text) > MAX_JOB_BYTES


def build_options(raw: dict[str, Any], run: str) -> JobOptions:
    """JobOptions from raw values (raises InvalidJob for bad ones). A custom id gets the run's
    prefix, so ids never collide across examples."""
    raw = dict(raw)
    if raw.get("backoff") is not None:
        kind, ms = raw["backoff"]
        raw["backoff"] = Backoff(kind, ms)
    if raw.get("job_id") == "custom":
        raw["job_id"] = f"fz-{run}-{uuid.uuid4().hex[:8]}"
    elif isinstance(raw.get("job_id"), str) and raw["job_id"] and raw["job_id"] not in ("123", "a:b"):
        raw["job_id"] = f"fz-{run}-{raw['job_id']}"
    return JobOptions(**raw)


# ------------------------------------------------------------------------------ the machine
@dataclass
class AdapterState:
    """One adapter's broker, producer and bookkeeping, shared by every example of a test."""

    kind: str
    broker: Broker
    producer: Producer
    expected: dict[str, tuple[str, Any]] = field(default_factory=dict)   # id -> (name, data) to run
    delivered: dict[str, tuple[str, Any]] = field(default_factory=dict)
    held: int = 0                 # accepted with a long delay: kept in the delayed set
    malformed: int = 0            # raw bad messages injected: each must be failed
    failed_seen: int = 0
    unexpected: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.broker.clear()
        self.expected.clear()
        self.delivered.clear()
        self.unexpected.clear()
        self.held = self.malformed = self.failed_seen = 0

    def handle(self, job: Any) -> None:
        if job.id not in self.expected:
            self.unexpected.append(job.id)
        self.delivered[job.id] = (job.name, job.data)

    def pending(self) -> int:
        return len(set(self.expected) - set(self.delivered))

    def drain(self) -> None:
        """Run a worker until every expected job and every malformed message is settled."""
        want = self.pending() + (self.malformed - self.failed_seen)
        if want <= 0:
            return
        report = self.broker.worker(self.handle, concurrency=2).run(max_jobs=want, timeout=30)
        self.failed_seen += report.failed


STATES: dict[str, AdapterState] = {}


def adapter_state(kind: str) -> AdapterState:
    if kind not in STATES:
        driver = registry.get(kind)
        broker = driver.open(find(kind).url, queue=f"fuzz-{uuid.uuid4().hex[:8]}", max_job_bytes=MAX_JOB_BYTES)
        STATES[kind] = AdapterState(kind, broker, broker.producer())
    return STATES[kind]


class BadInputMachine(RuleBasedStateMachine):
    kind = ""

    def __init__(self) -> None:
        super().__init__()
        self.state = adapter_state(self.kind)
        self.state.reset()  # each example starts from an empty queue: a failed one leaves nothing behind
        self.run_id = uuid.uuid4().hex[:6]
        self.broken = False  # a step failed: teardown then only cleans up (one failure, reported once)
        self.custom_ids: set[str] = set()

    def reuses_an_id(self, options: list[JobOptions]) -> bool:
        """True if a job would reuse a custom id of this example. What then happens is the
        adapter's (BullMQ keeps the first job and ignores the second; AMQP has no id to dedupe
        on and delivers both); the contract does not say, so this suite does not send it."""
        ids = [o.job_id for o in options if o.job_id]
        if len(set(ids)) < len(ids) or self.custom_ids & set(ids):
            return True
        self.custom_ids.update(ids)
        return False

    @contextlib.contextmanager
    def step(self) -> Any:
        self.broken = True
        yield
        self.broken = False

    def _accepted(self, job_id: str, name: str, data: Any, opts: JobOptions) -> None:
        if opts.delay_ms <= SOON_MS:
            self.state.expected[job_id] = (name, json.loads(json.dumps(data)))
        else:
            assert opts.delay_ms >= HELD_MS
            self.state.held += 1

    @rule(name=names, data=payloads, raw=options)
    def publish(self, name: Any, data: Any, raw: dict[str, Any]) -> None:
        with self.step():
            try:
                opts = build_options(raw, self.run_id)
            except InvalidJob:
                return  # bad options are refused where they are built, before any broker is involved
            refuse = documented_refusal(name, data)
            if self.reuses_an_id([opts]):
                return
            try:
                job_id = self.state.producer.publish(name, data, opts)
            except InvalidJob:
                assert refuse, f"refused a valid job: {name!r}"
                return
            except PublishRejected as exc:  # documented: the broker said no; the caller owns these
                for job_id in exc.job_ids:
                    self.state.expected.pop(job_id, None)
                return
            assert not refuse, f"accepted a job the contract refuses: {name!r}"
            self._accepted(job_id, name, data, opts)

    @rule(jobs=st.lists(st.tuples(names, payloads, options), min_size=1, max_size=5))
    def publish_many(self, jobs: list[tuple[Any, Any, dict[str, Any]]]) -> None:
        with self.step():
            specs, refuse = [], False
            for name, data, raw in jobs:
                try:
                    opts = build_options(raw, self.run_id)
                except InvalidJob:
                    return
                specs.append(JobSpec(name, data, opts))
                refuse = refuse or documented_refusal(name, data)
            if self.reuses_an_id([spec.options for spec in specs]):
                return
            try:
                ids = self.state.producer.publish_many(specs)
            except InvalidJob:
                assert refuse, "refused a valid batch"
                return  # all or nothing: the worker would flag any of them as unexpected
            assert not refuse, "accepted a batch with a job the contract refuses"
            assert len(ids) == len(specs)
            for job_id, spec in zip(ids, specs):
                self._accepted(job_id, spec.name, spec.data, spec.options)

    @precondition(lambda self: registry.get(self.kind).inject_raw is not None)
    @rule(raw=st.binary(max_size=40).filter(lambda b: not _is_json(b)))
    def inject_malformed(self, raw: bytes) -> None:
        with self.step():
            registry.get(self.kind).inject_raw(self.state.broker, "user_variables_update", raw)  # type: ignore[misc]
            self.state.malformed += 1

    @rule()
    def run_worker(self) -> None:
        with self.step():
            self.state.drain()

    @invariant()
    def nothing_unexpected(self) -> None:
        assert not self.state.unexpected, f"jobs that were never accepted ran: {self.state.unexpected[:5]}"

    def teardown(self) -> None:
        if self.broken:
            return
        state = self.state
        sentinel = state.producer.publish("user_variables_update", {"sentinel": self.run_id})  # still usable
        state.expected[sentinel] = ("user_variables_update", {"sentinel": self.run_id})
        state.drain()
        missing = set(state.expected) - set(state.delivered)
        assert not missing, f"accepted jobs never ran: {sorted(missing)[:5]}"
        for job_id, expected in state.expected.items():
            assert state.delivered[job_id] == expected, f"job {job_id} arrived changed"
        assert state.failed_seen == state.malformed, "every malformed message was failed, the worker went on"
        stats = state.broker.stats()
        if stats.delayed is not None:
            deadline = time.monotonic() + 5
            while stats.delayed != state.held and time.monotonic() < deadline:
                time.sleep(0.05)  # a delayed message may be between two delay levels for a moment
                stats = state.broker.stats()
            assert stats.delayed == state.held, (f"long-delayed jobs are held, none lost, none early; "
                                                 f"delayed now: {_delayed_jobs(state.broker)}")


def _delayed_jobs(broker: Broker) -> list[dict[str, str]]:
    """What the delayed set holds, for the failure message (Redis: the job hashes, shortened)."""
    lanes = getattr(broker, "lane_keys", None)
    if lanes is None:
        return []
    out = []
    for lane, keys in lanes.items():
        for raw_id in broker.client.zrange(keys.delayed, 0, 9):  # type: ignore[attr-defined]
            job = broker.job_hash(raw_id.decode(), lane)  # type: ignore[attr-defined]
            out.append({"id": raw_id.decode(), **{k: v[:120] for k, v in job.items()}})
    return out


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return True
    except ValueError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _clean_up() -> Any:
    yield
    for state in STATES.values():
        try:
            state.producer.close()
            state.broker.purge()
        finally:
            state.broker.close()
    STATES.clear()


@pytest.mark.parametrize("kind", registry.kinds())
def test_bad_input_never_breaks_a_producer_or_a_worker(kind: str) -> None:
    machine = type(f"BadInput_{kind}", (BadInputMachine,), {"kind": kind})
    machine.TestCase.settings = PROFILE
    machine.TestCase().runTest()
