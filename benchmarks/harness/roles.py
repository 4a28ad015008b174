"""What producer and consumer processes do during a run.

Each role connects, says "ready", waits for the start signal with the shared start time
``t0`` (monotonic ns), does its work, sends progress every half second, and at the end sends
its :class:`~benchmarks.metrics.Recorder` (and the error that stopped it, if any). A role never
raises out: a broker that dies mid-run gives partial figures and an error, not a hang.

The same functions run in processes (real brokers) or threads (the in-process memory broker).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokers import registry
from brokers.contract import (
    Backoff,
    BackoffType,
    Broker,
    BrokerUnavailable,
    Fate,
    Job,
    JobOptions,
    JobSpec,
    PublishFailed,
)

from .cpu_idle import AwakeCpus, tighten_timer_slack
from .metrics import SEEN_RECORD, Recorder, Trace
from .scenario import Scenario
from .workloads import CPU_SHARE, PayloadBank, ServiceModel, closed_loop_types, open_loop_schedule, perform

PROGRESS_EVERY_S = 0.5
SPIN_S = 0.0002         # the last stretch before a send time is spun: an idle CPU may wake up late
SPIN_AWAKE_S = 0.00003  # the same with the CPUs held awake (see spin_margin)
STOP_NOTICE_S = 0.2  # a consumer waiting for work looks at the stop signal at least this often
log = logging.getLogger(__name__)


POISON = "poison_workflow"          # a job type whose handler always raises
POISON_OPTIONS = JobOptions(attempts=3, backoff=Backoff(BackoffType.FIXED, 20))
TRACE_KEY = "trace"                 # the payload field that carries a job's Trace
MALFORMED = b'{"trace": [not json'  # what a malformed job's payload is


@dataclass
class RoleSpec:
    role: str            # "producer" or "consumer"
    index: int
    scenario: dict[str, Any]
    url: str
    queue: str
    seen_log: str | None = None  # consumers: append each completed run here (survives SIGKILL)


class SharedFlag:
    """An event shared between processes, read by polling a shared byte.

    multiprocessing.Event is not used on purpose: when several processes wait on it with
    timeouts while another sets it, CPython's Condition can fail an internal assertion.
    """

    def __init__(self, ctx: Any) -> None:
        self._value = ctx.Value("b", 0, lock=False)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._value.value:
            left = 0.01 if deadline is None else min(0.01, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


class Credit:
    """Closed loop: how many more jobs the producers may send. The backlog sampler sets it to
    ``max_backlog`` minus the broker's backlog every few tens of ms; each producer takes its
    batch from it before publishing. The backlog then stays near ``max_backlog`` (over it by at
    most the jobs in transit when the broker was read), however fast the producers are.

    ``value`` is a ``multiprocessing.Value("q")`` (roles are processes) or a :class:`ThreadValue`."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def take(self, n: int) -> int:
        """Up to ``n`` jobs' worth of credit (0 when there is none)."""
        with self.value.get_lock():
            granted = min(n, self.value.value)
            if granted > 0:
                self.value.value -= granted
            return max(granted, 0)

    def refill(self, amount: int) -> None:
        with self.value.get_lock():
            self.value.value = max(amount, 0)


class Control:
    """Signals between the runner and one role (multiprocessing or threading objects).

    ``outbox`` is where this role's messages go: a pipe of its own when roles are processes (a
    role SIGKILLed in the middle of a write then breaks only its own pipe; with one queue shared
    by every role, the lock it held would block every other role for good), or the runner's
    queue when roles are threads.
    """

    def __init__(self, outbox: Any, start: Any, stop: Any, t0: Any, consume: Any, credit: Credit) -> None:
        self.outbox, self.start, self.stop, self.t0 = outbox, start, stop, t0
        self.consume = consume    # drain mode: consumers start when this is set
        self.credit = credit      # closed loop: how many more jobs producers may send
        self._lock: threading.Lock | None = None

    def for_role(self, outbox: Any) -> "Control":
        """The same signals, with another outbox."""
        return Control(outbox, self.start, self.stop, self.t0, self.consume, self.credit)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lock": None}  # a lock is per process

    def send(self, *message: Any) -> None:
        if self._lock is None:
            self._lock = threading.Lock()
        with self._lock:  # a role sends from two threads (its work and its progress reports)
            if hasattr(self.outbox, "put"):
                self.outbox.put(message)
            else:
                self.outbox.send(message)


def open_role_broker(spec: RoleSpec, scenario: Scenario, shared: Broker | None) -> Any:
    """The adapter a role uses: ours, or a contender's role program behind the role protocol
    (:class:`~benchmarks.contenders.bridge.ContenderBroker`) when the run's client is one."""
    if shared is not None:
        return shared
    if scenario.external:
        from brokers import clients

        from ..contenders.bridge import ContenderBroker

        return ContenderBroker(clients.get(scenario.client), scenario.broker, spec.url, spec.queue,
                               scenario.broker_options, spec.role, spec.index)
    options = {"reconnect_for_s": 10.0, **scenario.broker_options}
    return registry.get(scenario.broker).open(spec.url, queue=spec.queue, **options)


def role_main(spec: RoleSpec, control: Control, shared: Broker | None = None) -> None:
    """Entry point of a role (the target of a process or a thread)."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    scenario = Scenario.from_dict(spec.scenario)
    recorder = Recorder()
    error: str | None = None
    try:
        broker = open_role_broker(spec, scenario, shared)
    except Exception as exc:  # noqa: BLE001 - reported to the runner, which reports it to the user
        control.send("result", spec.role, spec.index, recorder.to_json(),
                     f"{spec.role} {spec.index} could not connect: {exc}", {})
        return
    extra: dict[str, Any] = {}
    try:
        if spec.role == "producer":
            _produce(spec, scenario, broker, recorder, control)
        else:
            extra = _consume(spec, scenario, broker, recorder, control)
    except Exception as exc:  # noqa: BLE001 - see above
        error = f"{spec.role} {spec.index}: {exc}"
        log.debug("role failed: %s", traceback.format_exc())
    finally:
        if shared is None:
            try:
                broker.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
    if getattr(broker, "described", None):  # a contender: what it said it is (library versions)
        extra["client"] = broker.described
    control.send("result", spec.role, spec.index, recorder.to_json(), error, extra)
    if spec.role == "producer":
        # Stay alive (idle) until the run ends, so the runner can read this process's CPU time.
        control.stop.wait(timeout=scenario.warmup_s + scenario.duration_s + scenario.drain_timeout_s + 60)


def _wait_start(spec: RoleSpec, scenario: Scenario, recorder: Recorder, control: Control) -> int:
    control.send("ready", spec.role, spec.index)
    deadline = time.monotonic() + 120
    while not control.start.wait(timeout=0.05):  # the runner may stop the run before it starts (Ctrl-C)
        if control.stop.is_set():
            raise RuntimeError("the run was stopped before it started")
        if time.monotonic() > deadline:
            raise RuntimeError("no start signal within 120 s")
    t0 = control.t0.value
    recorder.t0_ns = t0
    recorder.window_start_ns = t0 + int(scenario.warmup_s * 1e9)
    recorder.window_end_ns = recorder.window_start_ns + int(scenario.duration_s * 1e9)
    if scenario.mode == "drain":  # everything drained counts
        recorder.window_start_ns, recorder.window_end_ns = 0, 2**62
    wait_s = (t0 - time.monotonic_ns()) / 1e9  # t0 is a moment ahead (one monotonic clock for all roles)
    if wait_s > 0:
        control.stop.wait(wait_s)
    return t0


def spin_margin() -> float:
    """How long before a send time the producer stops idling and spins: SPIN_S, or SPIN_AWAKE_S
    while the CPUs are held out of idle states (:mod:`.cpu_idle`: a wake-up is then prompt, so
    spinning longer would only add CPU to the producer's figure), with this process's timer
    slack cut to 1 us so its sleeps end on time too."""
    if AwakeCpus().in_force() == 0:
        tighten_timer_slack()
        return SPIN_AWAKE_S
    return SPIN_S


def _sleep_until(t_ns: int, producer: Any, spin_s: float = SPIN_S) -> None:
    """Wait for an intended send time: idle (reading confirms as they come, so their times are
    the broker's, not the next publish's) until ``spin_s`` before, then spin."""
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > spin_s + 0.0003:
        producer.idle(delay - spin_s)
    while time.monotonic_ns() < t_ns:
        pass


class Acceptances:
    """Which of a producer's jobs the broker accepted, refused or left in doubt, and how long
    each acceptance took.

    ``sent(ids, seqs, started)`` records a call's jobs once it returned (or raised, with the
    ids the producer still keeps); acceptances reported by ``on_accepted`` (during the call, or
    later with windowed confirms) are matched against those. An id that matches nothing (a job
    the producer gave back, or one of a call that failed outright) is counted and skipped, never
    waited for: one refused call must not freeze the count of every later one. ``failed(exc,
    seqs, started)`` records a call that raised: each of its jobs by its fate, and the jobs of
    earlier calls the error gives back (refused or in doubt). Whatever is still unanswered at
    the end is in doubt (:meth:`unanswered_in_doubt`): every sent job ends in exactly one outcome.
    """

    def __init__(self, producer_index: int, recorder: Recorder) -> None:
        self.producer_index, self.recorder = producer_index, recorder
        self.pending: dict[str, tuple[int, int]] = {}      # job id -> seq, publish start
        self.reported: list[tuple[list[str], int]] = []    # (ids, when) from on_accepted

    def on_accepted(self, ids: list[str], when: int | None = None) -> None:
        """``ids`` were accepted, seen ``when`` (monotonic ns; default now: a contender's role
        says when it saw the acceptance, so the pipe back to the harness is not counted)."""
        self.reported.append((ids, when or time.monotonic_ns()))

    def sent(self, ids: list[str | None], seqs: list[int], started: int) -> None:
        for job_id, s in zip(ids, seqs, strict=True):
            if job_id is not None:
                self.pending[job_id] = (s, started)
        self.settle()

    def given_back(self, ids: list[str]) -> list[int]:
        """Jobs of earlier calls the producer handed back (never accepted): forget them; their
        sequence numbers (ids that are not ours, or of the failing call itself, are skipped)."""
        out = []
        for job_id in ids:
            found = self.pending.pop(job_id, None)
            if found is not None:
                out.append(found[0])
        return out

    def failed(self, exc: PublishFailed, seqs: list[int], started: int) -> None:
        """A call that raised: each job's outcome, and the earlier jobs the error names. (Jobs
        of the call reported accepted during it, before the error, are matched at the end.)"""
        fates = exc.fates if exc.fates is not None and len(exc.fates) == len(seqs) else [Fate.IN_DOUBT] * len(seqs)
        kept = exc.accepted if exc.accepted is not None and len(exc.accepted) == len(seqs) else [None] * len(seqs)
        index = self.producer_index
        earlier_refused, earlier_doubt = self.given_back(exc.job_ids), self.given_back(exc.in_doubt)
        for seq in earlier_refused:
            self.recorder.refused(index, seq)
        for seq in earlier_doubt:
            self.recorder.in_doubt(index, seq)
        for job_id, fate, seq in zip(kept, fates, seqs, strict=True):
            if fate is Fate.ACCEPTED and job_id is not None:
                self.pending[job_id] = (seq, started)
            elif fate is Fate.REFUSED:
                self.recorder.refused(index, seq)
            else:
                self.recorder.in_doubt(index, seq)
        self.settle()

    def unsent(self, seqs: list[int]) -> None:
        """A call that failed before anything of it can have reached the broker."""
        for seq in seqs:
            self.recorder.refused(self.producer_index, seq)

    def unanswered_in_doubt(self) -> int:
        """At the end: jobs sent and never answered (no confirm, no error) are in doubt."""
        self.settle()
        left, self.pending = self.pending, {}
        for seq, _started in left.values():
            self.recorder.in_doubt(self.producer_index, seq)
        return len(left)

    def settle(self) -> None:
        reported, self.reported = self.reported, []
        for ids, when in reported:
            for job_id in ids:
                found = self.pending.pop(job_id, None)
                if found is None:
                    self.recorder.count("accepted_unknown")
                    continue
                seq, started = found
                self.recorder.accepted(self.producer_index, seq, when - started, started)


def _produce(spec: RoleSpec, scenario: Scenario, broker: Broker, recorder: Recorder, control: Control) -> None:
    producer = broker.producer()
    if scenario.mode == "closed" and hasattr(producer, "window"):
        # A contender's producer sends ahead (benchmarks/contenders/bridge.py); the closed loop's
        # bound counts only what the broker holds, so here it sends no further ahead than one call.
        producer.window = scenario.batch
    bank = PayloadBank(scenario.seed * 1000 + spec.index, ServiceModel(scenario.time_scale, scenario.service_factor))
    accepts = Acceptances(spec.index, recorder)
    producer.on_accepted = accepts.on_accepted

    seq = 0
    last_progress = 0.0

    bad_rng = random.Random(scenario.seed * 7919 + spec.index)
    inject_raw = registry.get(scenario.broker).inject_raw
    if scenario.malformed_share and inject_raw is None:
        raise ValueError(f"{scenario.broker} cannot take raw messages: malformed_share must be 0")

    def publish(jobs: list[tuple[str, int]]) -> None:
        """Publish (job type, intended send time or 0) pairs in one call."""
        nonlocal seq
        started = time.monotonic_ns()
        specs, seqs = [], []
        for job_type, intended_ns in jobs:
            if scenario.malformed_share and bad_rng.random() < scenario.malformed_share:
                inject_raw(broker, job_type, MALFORMED)  # type: ignore[misc]
                recorder.count("malformed_sent")
            poison = scenario.poison_share and bad_rng.random() < scenario.poison_share
            data = dict(bank.payload(job_type, seq))
            data[TRACE_KEY] = list(Trace(spec.index, seq, intended_ns, started))
            specs.append(JobSpec(POISON, data, POISON_OPTIONS) if poison else JobSpec(job_type, data))
            if poison:
                recorder.count("poison_sent")
            seqs.append(seq)
            recorder.sent_job(intended_ns, started)
            seq += 1
        try:
            ids: list[str | None] = list(producer.publish_many(specs))
        except PublishFailed as exc:
            # A full queue (Redis maxmemory, a blocked RabbitMQ), a nack, a closed channel, a
            # confirm timeout, a WAIT short of replicas: the error says, per job of this call, what
            # became of it (and may name jobs of earlier calls still awaiting their confirm).
            # Count each by its outcome, back off, go on (an outage ends the producer).
            accepts.failed(exc, seqs, started)
            control.send("progress", spec.role, spec.index, seq)
            log.info("publish %s: %s", "in doubt" if exc.doubtful else "refused", exc)
            if isinstance(exc, BrokerUnavailable):
                raise
            control.stop.wait(0.05)
            return
        except BrokerUnavailable:
            accepts.unsent(seqs)  # nothing of this call can have reached the broker
            raise
        accepts.sent(ids, seqs, started)

    def settling(step: Callable[[], None]) -> bool:
        """Run a step that only reads confirms (idle, the final flush). A refusal or a doubt it
        reports (a nack of an earlier call's jobs while a quorum leader changes, a confirm
        timeout) gives those jobs back: count them by outcome, as publish() does, and go on."""
        try:
            step()
            return True
        except PublishFailed as exc:
            accepts.failed(exc, [], 0)
            log.info("publish %s while reading confirms: %s", "in doubt" if exc.doubtful else "refused", exc)
            if isinstance(exc, BrokerUnavailable):
                raise
            return False

    def progress() -> None:
        nonlocal last_progress
        now = time.monotonic()
        if now - last_progress >= PROGRESS_EVERY_S:
            last_progress = now
            control.send("progress", spec.role, spec.index, seq)

    t0 = _wait_start(spec, scenario, recorder, control)
    end_ns = t0 + int((scenario.warmup_s + scenario.duration_s) * 1e9)
    try:
        if scenario.mode in ("closed", "drain"):
            types = closed_loop_types(scenario.profile, scenario.seed * 1000 + spec.index)
            quota = scenario.drain_jobs // scenario.producers + (spec.index < scenario.drain_jobs % scenario.producers)
            while not control.stop.is_set():
                if scenario.mode == "closed" and time.monotonic_ns() >= end_ns:
                    break
                if scenario.mode == "closed":
                    n = control.credit.take(scenario.batch)
                    if n <= 0:  # the backlog is at max_backlog: wait for the consumers
                        settling(lambda: producer.idle(0.005))  # reading confirms: their times stay true
                        accepts.settle()
                        progress()
                        continue
                else:
                    n = min(scenario.batch, quota - seq)
                    if n <= 0:
                        break
                publish([(next(types), 0) for _ in range(n)])
                progress()
        else:
            rate = scenario.rate / scenario.producers
            schedule = [(t0 + int(offset * 1e9), job_type) for offset, job_type in open_loop_schedule(
                scenario.profile, rate, scenario.warmup_s + scenario.duration_s,
                scenario.seed * 1000 + spec.index, scenario.burst_every_s)]
            i = 0
            spin_s = spin_margin()
            while i < len(schedule) and not control.stop.is_set():
                _sleep_until(schedule[i][0], producer, spin_s)
                now = time.monotonic_ns()
                j = i + 1  # jobs already due go in the same call, up to the batch size
                while j < len(schedule) and j - i < scenario.batch and schedule[j][0] <= now:
                    j += 1
                publish([(job_type, intended) for intended, job_type in schedule[i:j]])
                i = j
                progress()
        for _ in range(3):  # a flush that gives jobs back may leave others to confirm: read those too
            if settling(producer.flush):
                break
    finally:
        recorder.counters["sent"] = seq
        recorder.counters["unconfirmed_at_end"] = accepts.unanswered_in_doubt()
        control.send("progress", spec.role, spec.index, seq)
        try:
            producer.close()
        except Exception:  # noqa: BLE001 - the broker may be gone; the figures say so
            pass


def _consume(spec: RoleSpec, scenario: Scenario, broker: Any, recorder: Recorder,
             control: Control) -> dict[str, int]:
    seen_fd = os.open(spec.seen_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if spec.seen_log else None

    def note_run(name: str, raw: Any, start: int, end: int, redelivered: bool, attempts_made: int,
                 final: bool) -> None:
        """Count a run of a job whose data carried trace ``raw``. ``final``: the run that ends the
        job's chain (it completed, or its last attempt failed); a job is settled (not lost) once
        such a run happened, whatever came before."""
        if not raw:
            return
        trace = Trace(*raw)
        if seen_fd is not None and final:
            os.write(seen_fd, SEEN_RECORD.pack(trace.producer, trace.seq, end))  # unbuffered: survives SIGKILL
        recorder.ran(name, trace, start, end, redelivered, attempts_made, final)

    def handle(job: Job) -> Any:
        start = time.monotonic_ns()
        data = job.data
        poison = job.name == POISON
        result = None if poison else perform(job.name, data)
        end = time.monotonic_ns()
        note_run(job.name, data.get(TRACE_KEY) if isinstance(data, dict) else None, start, end, job.redelivered,
                 job.attempts_made, not poison or job.attempts_made + 1 >= job.options.attempts)
        if poison:
            raise RuntimeError("poison job: this handler always fails")
        return result

    if scenario.external:  # the contender runs the jobs (as perform() does) and reports each run
        worker = broker.worker(note_run, concurrency=scenario.concurrency, prefetch=scenario.prefetch,
                               cpu_share=CPU_SHARE)
    else:
        options = registry.get(scenario.broker).worker_options(scenario.concurrency, scenario.prefetch)
        worker = broker.worker(handle, concurrency=scenario.concurrency, **options)
    if hasattr(worker, "idle_block_s"):  # notice the runner's stop soon (a delivery ends the wait anyway)
        worker.idle_block_s = min(worker.idle_block_s, STOP_NOTICE_S)
    done = threading.Event()

    def watch() -> None:  # forward the runner's stop, and report progress
        while not done.is_set():
            if control.stop.wait(PROGRESS_EVERY_S):
                worker.stop()
                return
            control.send("progress", spec.role, spec.index, recorder.counters.get("ran", 0))

    _wait_start(spec, scenario, recorder, control)
    if scenario.mode == "drain" and not control.consume.wait(timeout=scenario.drain_timeout_s + 600):
        raise RuntimeError("consumers were never told to start draining")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        limit = scenario.warmup_s + scenario.duration_s + scenario.drain_timeout_s + 30
        report = worker.run(timeout=limit if scenario.mode != "drain" else scenario.drain_timeout_s + 30)
    finally:
        done.set()
        if seen_fd is not None:
            os.close(seen_fd)
        control.send("progress", spec.role, spec.index, recorder.counters.get("ran", 0))
    return {"completed": report.completed, "retried": report.retried, "failed": report.failed,
            "lost_lock": report.lost_lock, "redelivered": report.redelivered, "reconnects": report.reconnects}

