"""The harness's side of the role protocol: a contender's producer or worker, seen as ours.

A role process of the harness (see :mod:`benchmarks.harness.roles`) that runs a contender
starts the contender's role program (``Client.command``), speaks :mod:`.protocol` with it, and
hands the harness the same objects our adapters give: a producer whose ``publish_many`` returns
the accepted ids or raises :class:`~brokers.contract.PublishFailed` with each job's fate, and a
worker whose ``run`` reports every run of a job (to the recorder and the seen-log) and returns a
:class:`~brokers.contract.WorkerReport`. The workload, the pacing, the counting and the
histograms stay the harness's: only the client's calls happen in the other program.

What the figures include: a producer's acceptance latency is measured from just before the
harness writes the call to the pipe to the moment the role saw the broker's answer (its own
clock, the same CLOCK_MONOTONIC), so the one hop on the pipe toward the role (tens of
microseconds) is in it, and so is any wait behind the role's earlier calls (the harness sends
ahead, up to a window: see :class:`ContenderProducer`). The role program's CPU is the contender's; the harness's process
around it counts as the harness's (``cpu_seconds`` of a role includes its children).

The role program dies with the harness's role process (PR_SET_PDEATHSIG, SIGKILL): a worker
killed by a fault scenario takes its contender with it, as a crashed service would.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue as queue_module
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping

from brokers import clients, registry
from brokers.contract import (
    DEFAULT_LANE,
    Fate,
    JobOptions,
    JobSpec,
    PublishInDoubt,
    PublishRejected,
    UnavailableInDoubt,
    WorkerReport,
)

from . import protocol

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 60.0   # a publish call unanswered this long: its jobs are in doubt, the role is ended
STOP_TIMEOUT_S = 60.0
NoteRun = Callable[[str, Any, int, int, bool, int, bool], None]


class RoleFailed(RuntimeError):
    """The contender's role program failed; the message carries its last words on stderr."""


def _die_with_parent() -> None:  # runs in the child before exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RoleProcess:
    """A contender's role program, spoken to in JSON lines."""

    def __init__(self, client: clients.Client) -> None:
        client.check_available()
        self.client = client
        self.proc = subprocess.Popen(list(client.command), cwd=client.cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        self.inbox: queue_module.Queue[dict[str, Any] | Exception | None] = queue_module.Queue()
        self.stderr: deque[str] = deque(maxlen=20)
        self._write = threading.Lock()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.inbox.put(protocol.parse(line))
            except protocol.ProtocolError as exc:
                self.inbox.put(exc)
        self.inbox.put(None)  # the program closed its stdout (it ended)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with self._write:
            try:
                self.proc.stdin.write(protocol.encode(message))
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                raise self.failure("its stdin is closed") from None

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None when none came within ``timeout``. A RoleFailed when the
        program ended, wrote a line that is not the protocol, or reported a fatal error. Every
        line the program wrote before it ended is returned first (a worker's last runs count)."""
        try:
            item = self.inbox.get(timeout=timeout)
        except queue_module.Empty:
            return None
        if item is None:
            self.inbox.put(None)  # every later read sees the end too
            self._follow_a_kill()
            raise self.failure("it ended")
        if isinstance(item, Exception):
            raise self.failure(str(item))
        if item["type"] == "error" and item["fatal"]:
            raise self.failure(item["message"])
        return item

    def _follow_a_kill(self) -> None:
        """The program was killed (SIGKILL: a fault scenario's worker or producer kill, see
        :func:`kill_role`): this harness process, which only bridges to it, dies the same way
        once every line the program wrote is forwarded, so the run counts what a killed role
        leaves behind and nothing after. Never in the main process (a role run on a thread)."""
        try:
            code = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return
        if code == -signal.SIGKILL and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)

    def failure(self, what: str) -> RoleFailed:
        code = self.proc.poll()
        said = " | ".join(self.stderr)
        ended = f" (exit code {code})" if code is not None else ""
        said = f"; stderr: {said[-600:]}" if said else ""
        return RoleFailed(f"{self.client.label} role program: {what}{ended}{said}")

    def close(self, timeout: float = 10.0) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def kill_role(pid: int, grace_s: float = 2.0) -> None:
    """SIGKILL a role process of the harness and any contender program it runs, the program
    first: the program is the worker (or producer) that really dies; the harness process that
    bridges to it forwards every run the program reported before it died, then ends the same
    way (:meth:`RoleProcess._follow_a_kill`), and is killed after ``grace_s`` if it has not.
    For a role of our own adapter (no child process) this is a plain SIGKILL."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + (grace_s if children else 0.0)
    while time.monotonic() < deadline:   # never reap it: its parent (multiprocessing) does
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ContenderBroker:
    """What a harness role holds instead of our adapter when the run's client is a contender."""

    def __init__(self, client: clients.Client, kind: str, url: str, queue: str,
                 broker_options: Mapping[str, Any], role: str, index: int) -> None:
        self.client, self.kind, self.url, self.queue, self.index = client, kind, url, queue, index
        self.options = client.options_for_role(broker_options)
        # Declare the queue as our adapter does for this run (its arguments, its lanes), so the
        # contender's producers and workers meet on it and the harness's counts read it. An AMQP
        # client is told the default lane's queue (BullMQ's clients share Redis's key layout).
        ours = registry.get(kind).open(url, queue=queue, **{**broker_options, "reconnect_for_s": 10.0})
        try:
            ours.stats()
            if registry.get(kind).protocol == registry.PROTOCOL_AMQP_091:
                self.options["amqp_queue"] = ours.topology.lane_queue(DEFAULT_LANE)  # type: ignore[attr-defined]
        finally:
            ours.close()
        self.role = role
        self.process: RoleProcess | None = None
        self.described: dict[str, Any] = {}

    def _start(self, role: str, **extra: Any) -> RoleProcess:
        process = RoleProcess(self.client)
        process.send({"type": "setup", "protocol": protocol.VERSION, "role": role, "index": self.index,
                       "url": self.url, "queue": self.queue, "options": self.options, **extra})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            message = process.receive(timeout=max(deadline - time.monotonic(), 0.01))
            if message is None:
                process.close(1)
                raise process.failure(f"not ready within {READY_TIMEOUT_S:.0f} s")
            if message["type"] == "ready":
                break
        skew = abs(message["clock_ns"] - time.monotonic_ns())
        if skew > 5e9:
            process.close(1)
            raise process.failure(f"its clock is {skew / 1e9:.0f} s from ours: the role protocol needs CLOCK_MONOTONIC")
        self.described = message["client"]
        self.process = process
        return process

    def producer(self) -> "ContenderProducer":
        return ContenderProducer(self._start("producer"))

    def worker(self, note_run: NoteRun, *, concurrency: int, prefetch: int | None,
               cpu_share: Mapping[str, float]) -> "ContenderWorker":
        process = self._start("worker", concurrency=concurrency, prefetch=prefetch or concurrency,
                              cpu_share=dict(cpu_share))
        return ContenderWorker(process, note_run)

    def close(self) -> None:
        if self.process is not None:
            self.process.close()


class ContenderProducer:
    """A contender's producer behind our producer's interface, windowed like our AMQP producer's
    confirms: a call writes its jobs to the role and returns their ids; the role publishes the
    calls one after the other, each as its client does (BullMQ: one ``add`` awaited, or an
    ``addBulk``; amqplib: each confirm awaited), and its answers are read as they come (reported
    through ``on_accepted`` with the role's own time of the broker's answer), in :meth:`idle`,
    and in :meth:`flush`, which waits for every one. At most ``window`` jobs are unanswered; a
    call beyond it waits for answers first.

    Why not one call answered at a time: the harness then waited for the pipe both ways between
    two jobs, and the client's pace was the pipe's (BullMQ's adds ran at half the rate the same
    client reaches on its own). The client's own pacing is kept: it still awaits each answer.

    Ids: a job's custom id when it has one (``JobOptions.job_id``), else ``#<n>``, this
    producer's own numbering (the broker's id of such a job is the role's to know). A refusal or
    a doubt that an answer reports is raised by the next call (which then sends nothing: its
    jobs are refused), or by :meth:`flush`."""

    WINDOW = 1000

    def __init__(self, process: RoleProcess, window: int = WINDOW) -> None:
        self.process = process
        self.window = window
        self.on_accepted: Callable[..., None] = lambda ids, when=None: None
        self._seq = 0
        self._unanswered: dict[int, str] = {}   # seq -> id, sent and not yet answered
        self._refused: list[str] = []
        self._doubt: list[str] = []
        self._errors: list[str] = []
        self._silent_since = time.monotonic()

    def publish_many(self, specs: list[JobSpec]) -> list[str | None]:
        self._raise_failures(len(specs))
        while self._unanswered and len(self._unanswered) + len(specs) > self.window:
            self._read(ANSWER_TIMEOUT_S, len(specs))
            self._raise_failures(len(specs))
        first = self._seq
        self._seq += len(specs)
        ids: list[str | None] = [s.options.job_id or f"#{first + i}" for i, s in enumerate(specs)]
        jobs = [{"seq": first + i, "name": s.name, "data": s.data, "attempts": s.options.attempts,
                 **({"id": s.options.job_id} if s.options.job_id else {})} for i, s in enumerate(specs)]
        if not self._unanswered:
            self._silent_since = time.monotonic()
        try:
            self.process.send({"type": "publish", "jobs": jobs})
        except RoleFailed as exc:  # the line never reached the role: this call's jobs are not held
            raise self._ended(str(exc), len(specs)) from None
        for i, job_id in enumerate(ids):
            self._unanswered[first + i] = job_id  # type: ignore[assignment]
        self._read(0.0, 0)  # answers already there (earlier calls'), without waiting
        return ids

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str | None:
        """One job, one call: our producer's ``publish``."""
        return self.publish_many([JobSpec(name, data, options or JobOptions())])[0]

    def idle(self, seconds: float) -> None:
        """Read the role's answers for up to ``seconds`` (a refusal or doubt among them is
        raised by the next call or :meth:`flush`)."""
        deadline = time.monotonic() + max(seconds, 0.0)
        while True:
            left = deadline - time.monotonic()
            if not self._unanswered:
                time.sleep(max(left, 0.0))
                break
            if left <= 0 or not self._read(left, 0, once=True):
                break

    def flush(self) -> None:
        """Wait for every job sent to be answered (or the role to fall silent for
        ANSWER_TIMEOUT_S: the rest is in doubt); raise what was refused or left in doubt."""
        while self._unanswered:
            self._read(ANSWER_TIMEOUT_S, 0, once=True)
        self._raise_failures(None)

    def _read(self, timeout: float, unsent: int, once: bool = False) -> bool:
        """Handle the role's messages: wait up to ``timeout`` for the first, then take what is
        there. False when none came. A role that ended, or said nothing for ANSWER_TIMEOUT_S
        with jobs unanswered, raises UnavailableInDoubt (``unsent`` jobs of the calling call
        were not sent: refused)."""
        got = False
        wait = timeout
        while True:
            try:
                message = self.process.receive(timeout=wait)
            except RoleFailed as exc:
                raise self._ended(str(exc), unsent) from None
            if message is None:
                if self._unanswered and time.monotonic() - self._silent_since >= ANSWER_TIMEOUT_S:
                    self.process.proc.kill()
                    raise self._ended(f"no answer within {ANSWER_TIMEOUT_S:.0f} s", unsent)
                return got
            got = True
            self._silent_since = time.monotonic()
            self._take(message)
            wait = 0.0
            if once and not self._unanswered:
                return True

    def _take(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "accepted":
            ids = [self._unanswered.pop(seq) for seq in message["seqs"] if seq in self._unanswered]
            self.on_accepted(ids, message["t_ns"])
        elif kind == "failed":
            ids = [self._unanswered.pop(seq) for seq in message["seqs"] if seq in self._unanswered]
            (self._refused if message["fate"] == Fate.REFUSED.value else self._doubt).extend(ids)
            self._errors.append(f"{message['fate']}: {message['error']}")
        elif kind == "error":
            log.warning("%s: %s", self.process.client.label, message["message"])

    def _raise_failures(self, unsent: int | None) -> None:
        """Raise the refusals and doubts answered so far. ``unsent``: jobs of the calling
        publish, which then are not sent (refused); None outside a call."""
        if not (self._refused or self._doubt):
            return
        refused, doubt, errors = self._refused, self._doubt, self._errors
        self._refused, self._doubt, self._errors = [], [], []
        cls = PublishInDoubt if doubt else PublishRejected
        fates = None if unsent is None else [Fate.REFUSED] * unsent
        raise cls("; ".join(dict.fromkeys(errors)), refused, in_doubt=doubt, fates=fates)

    def _ended(self, why: str, unsent: int) -> UnavailableInDoubt:
        """The role ended (or went silent): every job sent and unanswered is in doubt, the jobs
        of the calling call not yet sent are refused, and the producer stops (as when a broker
        goes away)."""
        doubt = [*self._doubt, *self._unanswered.values()]
        refused = self._refused
        self._unanswered, self._doubt, self._refused = {}, [], []
        return UnavailableInDoubt(why, refused, in_doubt=doubt, fates=[Fate.REFUSED] * unsent)

    def close(self) -> None:
        try:
            self.process.send({"type": "stop"})
        except RoleFailed:
            pass
        self.process.close(STOP_TIMEOUT_S)


class ContenderWorker:
    """A contender's worker: every ``ran`` goes to ``note_run`` as it comes; ``run`` returns
    the role's own counts once it stopped."""

    def __init__(self, process: RoleProcess, note_run: NoteRun) -> None:
        self.process = process
        self.note_run = note_run
        self._stop = threading.Event()
        self.idle_block_s = 0.2

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, timeout: float | None = None) -> WorkerReport:
        self.process.send({"type": "consume"})
        deadline = None if timeout is None else time.monotonic() + timeout
        stop_sent = False
        while True:
            if not stop_sent and (self._stop.is_set() or (deadline is not None and time.monotonic() > deadline)):
                self.process.send({"type": "stop"})
                stop_sent = True
                deadline = time.monotonic() + STOP_TIMEOUT_S
            elif stop_sent and deadline is not None and time.monotonic() > deadline:
                self.process.proc.kill()
                raise self.process.failure(f"did not stop within {STOP_TIMEOUT_S:.0f} s")
            message = self.process.receive(timeout=self.idle_block_s)
            if message is None:
                continue
            kind = message["type"]
            if kind == "ran":
                self.note_run(message["name"], message["trace"], message["start_ns"], message["end_ns"],
                              message["redelivered"], message["attempts_made"], message["final"])
            elif kind == "done":
                self.process.close(STOP_TIMEOUT_S)
                return WorkerReport(**message["report"])
            elif kind == "error":
                log.warning("%s: %s", self.process.client.label, message["message"])
