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
microseconds) is in it. The role program's CPU is the contender's; the harness's process
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
    """A contender's producer behind our producer's interface (one call answered at a time)."""

    def __init__(self, process: RoleProcess) -> None:
        self.process = process
        self.on_accepted: Callable[..., None] = lambda ids, when=None: None
        self._seq = 0

    def publish_many(self, specs: list[JobSpec]) -> list[str | None]:
        first = self._seq
        self._seq += len(specs)
        jobs = [{"seq": first + i, "name": s.name, "data": s.data, "attempts": s.options.attempts,
                 **({"id": s.options.job_id} if s.options.job_id else {})} for i, s in enumerate(specs)]
        self.process.send({"type": "publish", "jobs": jobs})
        ids: list[str | None] = [None] * len(specs)
        fates: list[Fate | None] = [None] * len(specs)
        errors: list[str] = []
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while any(f is None for f in fates):
            try:
                message = self.process.receive(timeout=max(deadline - time.monotonic(), 0.01))
            except RoleFailed as exc:
                raise self._unanswered(fates, ids, str(exc)) from None
            if message is None:
                self.process.proc.kill()
                raise self._unanswered(fates, ids, f"no answer within {ANSWER_TIMEOUT_S:.0f} s")
            kind = message["type"]
            if kind == "accepted":
                for seq, job_id in zip(message["seqs"], message["ids"], strict=True):
                    ids[seq - first], fates[seq - first] = job_id, Fate.ACCEPTED
                self.on_accepted(list(message["ids"]), message["t_ns"])
            elif kind == "failed":
                for seq in message["seqs"]:
                    fates[seq - first] = Fate(message["fate"])
                errors.append(f"{message['fate']}: {message['error']}")
            elif kind == "error":
                log.warning("%s: %s", self.process.client.label, message["message"])
        if any(f is not Fate.ACCEPTED for f in fates):
            kept = [job_id if f is Fate.ACCEPTED else None for job_id, f in zip(ids, fates)]
            cls = PublishInDoubt if Fate.IN_DOUBT in fates else PublishRejected
            raise cls("; ".join(dict.fromkeys(errors)), accepted=kept, fates=fates)  # type: ignore[arg-type]
        return ids

    def publish(self, name: str, data: Any, options: JobOptions | None = None) -> str | None:
        """One job, one call: our producer's ``publish``."""
        return self.publish_many([JobSpec(name, data, options or JobOptions())])[0]

    def _unanswered(self, fates: list[Fate | None], ids: list[str | None], why: str) -> UnavailableInDoubt:
        """The role ended (or went silent) with jobs of the call unanswered: they are in doubt,
        and the producer stops (as when a broker goes away)."""
        done = [f if f is not None else Fate.IN_DOUBT for f in fates]
        kept = [job_id if f is Fate.ACCEPTED else None for job_id, f in zip(ids, done)]
        return UnavailableInDoubt(why, accepted=kept, fates=done)

    def idle(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))  # every call is answered before it returns: nothing to read

    def flush(self) -> None:
        return None

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
