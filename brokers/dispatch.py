"""What both workers share: run a handler, decide the outcome, run jobs inline or on threads.

The broker-specific part of a worker only fetches jobs and records settlements; everything
between (calling the handler, turning an exception into retry-or-fail, the thread pool) lives
here so that both adapters behave the same way by construction.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .contract import JSON, Handler, Hooks, Job, Outcome, UnrecoverableError, resolve_handler

MAX_REASON_CHARS = 2000
_WAKE = object()  # posted by JobRunner.wake: not a settlement


@dataclass
class Settlement:
    """The decision for one run of a job, before the broker has recorded it."""

    job: Job
    outcome: Outcome
    result_json: str | None = None   # completed: JSON of the handler's return value
    reason: str | None = None        # retried/failed: why
    delay_ms: int = 0                # retried: backoff before the next attempt
    stacktrace: str | None = None
    ref: Any = None                  # adapter's handle (delivery tag, lock token...)


def reject(job: Job, reason: str, ref: Any = None) -> Settlement:
    """Fail a job at once, without running it (malformed payload, unknown type)."""
    return Settlement(job, Outcome.FAILED, reason=reason[:MAX_REASON_CHARS], ref=ref)


def settle_failure(job: Job, reason: str, *, unrecoverable: bool = False,
                   stacktrace: str | None = None, ref: Any = None) -> Settlement:
    """Retry while attempts remain (after the job's backoff), else fail for good."""
    reason = reason[:MAX_REASON_CHARS]
    attempts_after = job.attempts_made + 1
    if unrecoverable or attempts_after >= job.options.attempts:
        return Settlement(job, Outcome.FAILED, reason=reason, stacktrace=stacktrace, ref=ref)
    backoff = job.options.backoff
    delay = backoff.delay_for(attempts_after) if backoff else 0
    return Settlement(job, Outcome.RETRIED, reason=reason, delay_ms=delay,
                      stacktrace=stacktrace, ref=ref)


def run_handler(job: Job, handlers: Mapping[str, Handler] | Handler,
                hooks: Sequence[Hooks] = (), ref: Any = None) -> Settlement:
    """Run the job's handler and turn what happened into a settlement. Never raises."""
    handler = resolve_handler(handlers, job.name)
    if handler is None:
        return reject(job, f"unknown job type {job.name!r}: this worker has no handler for it", ref)
    for hook in hooks:
        hook.job_started(job)
    try:
        result = handler(job)
    except UnrecoverableError as exc:
        return settle_failure(job, _describe(exc), unrecoverable=True,
                              stacktrace=traceback.format_exc(limit=8), ref=ref)
    except Exception as exc:  # noqa: BLE001 - a handler may raise anything; that is its failure
        return settle_failure(job, _describe(exc), stacktrace=traceback.format_exc(limit=8), ref=ref)
    try:
        result_json = JSON.encode(result)
    except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, RecursionError...
        return settle_failure(job, f"handler returned a value that is not JSON: {exc}",
                              unrecoverable=True, ref=ref)
    return Settlement(job, Outcome.COMPLETED, result_json=result_json, ref=ref)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


log = logging.getLogger(__name__)


class JobThreads:
    """Up to ``size`` threads that run submitted calls in the order they came: a lighter
    ThreadPoolExecutor (no Future, lock and condition per call, which cost a no-op job about as
    much as pika's whole delivery). A thread is started when more calls may be running than
    threads exist (``busy``), so a worker that never has 50 jobs at once never starts 50."""

    def __init__(self, size: int, name: str) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._size, self._name = size, name
        self._threads: list[threading.Thread] = []

    def submit(self, call: Callable[..., None], *args: Any, busy: int) -> None:
        self._work.put((call, args))
        if len(self._threads) < min(busy, self._size):
            thread = threading.Thread(target=self._loop, name=f"{self._name}_{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            call, args = item
            try:
                call(*args)
            except BaseException:  # noqa: BLE001 - the call settles its own job; keep the thread
                log.exception("a job thread's call raised")

    def shutdown(self) -> None:
        """Run what was submitted, then end every thread."""
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()


class JobRunner:
    """Runs handlers inline (concurrency 1) or on ``concurrency`` threads.

    Finished settlements are collected in a queue that the worker's I/O loop drains in batches,
    so that one broker round trip settles many jobs. ``wake`` is called (from a handler thread)
    when the queue goes from empty to non-empty, to interrupt an I/O loop that is waiting.
    """

    def __init__(self, handlers: Mapping[str, Handler] | Handler, concurrency: int,
                 hooks: Sequence[Hooks] = (), wake: Callable[[], None] | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.handlers = handlers
        self.hooks = tuple(hooks)
        self.concurrency = concurrency
        self.inline = concurrency == 1
        self._done: queue.SimpleQueue[Settlement] = queue.SimpleQueue()
        self._pool = None if self.inline else JobThreads(concurrency, "job")
        self._wake = wake
        self._lock = threading.Lock()
        self.in_flight = 0

    def submit(self, job: Job, ref: Any = None) -> None:
        self.in_flight += 1
        if self._pool is None:
            self._done.put(run_handler(job, self.handlers, self.hooks, ref))
        else:
            self._pool.submit(self._run_and_post, job, ref, busy=self.in_flight)

    def post(self, settlement: Settlement) -> None:
        """Settle a job without running it (rejections), through the same queue."""
        self.in_flight += 1
        self._done.put(settlement)

    def _run_and_post(self, job: Job, ref: Any) -> None:
        try:
            settlement = run_handler(job, self.handlers, self.hooks, ref)
        except BaseException as exc:  # noqa: BLE001 - SystemExit, CancelledError...: still settle the job
            settlement = settle_failure(job, _describe(exc), ref=ref)
        with self._lock:
            was_empty = self._done.empty()
            self._done.put(settlement)
        if was_empty and self._wake is not None:
            self._wake()

    def wake(self) -> None:
        """Make a waiting :meth:`collect` return now (from any thread): new work may be ready."""
        self._done.put(_WAKE)  # type: ignore[arg-type]

    def collect(self, timeout: float | None = None) -> list[Settlement]:
        """Every finished settlement; waits up to ``timeout`` for the first one (or a
        :meth:`wake`) if none is ready."""
        out: list[Settlement] = []
        try:
            if timeout is not None and timeout > 0:
                out.append(self._done.get(timeout=timeout))
            else:
                out.append(self._done.get_nowait())
        except queue.Empty:
            return out
        with self._lock:
            while True:
                try:
                    out.append(self._done.get_nowait())
                except queue.Empty:
                    break
        out = [s for s in out if s is not _WAKE]
        self.in_flight -= len(out)
        return out

    def free_slots(self) -> int:
        return max(self.concurrency - self.in_flight, 0)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
