"""Job locks of one Redis worker: renewal while jobs run, and the stalled-job check.

As BullMQ keeps its lock manager apart from its worker, this module owns the two periodic
duties of a worker that are not fetching or settling:

* renew the lock (``<id>:lock``, our token, TTL ``lock_duration_ms``) of every job the worker
  holds, every half lock duration (extendLocks.lua); a renewal also takes the job out of the
  ``stalled`` set;
* run the stalled check (moveStalledJobsToWait.lua) every ``stalled_interval_ms``: a job
  still in ``stalled`` and without a lock at the next check goes back to wait (or, past
  ``max_stalled_count``, to failed). Every worker runs it; the script itself makes sure it runs
  at most once per interval per queue.

Both run on one daemon thread between :meth:`LockKeeper.start` and :meth:`LockKeeper.stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .broker import BullMQRedisBroker

log = logging.getLogger(__name__)


class LockKeeper:
    """The locks one worker holds, and the thread that keeps them.

    :param broker: the adapter (its scripts and per-lane keys).
    :param worker_id: the worker's name, for messages.
    :param lanes: the lanes whose stalled jobs this worker checks.
    :param lock_duration_ms: lock TTL; renewed every half of it.
    :param stalled_interval_ms: how often the stalled check runs.
    :param max_stalled_count: recoveries of one job before it is failed instead.
    """

    def __init__(self, broker: "BullMQRedisBroker", worker_id: str, lanes: Sequence[str], *,
                 lock_duration_ms: int, stalled_interval_ms: int, max_stalled_count: int) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.lanes = list(lanes)
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms
        self.max_stalled_count = max_stalled_count
        self._held: dict[tuple[str, str], str] = {}  # (lane, job id) -> lock token
        self._settling: set[tuple[str, str]] = set()  # held jobs whose settlement is on its way
        self._held_lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- holdings
    def hold(self, lane: str, job_id: str, token: str) -> None:
        """The worker took a job: renew its lock from now on."""
        with self._held_lock:
            self._held[(lane, job_id)] = token

    def settling(self, lane: str, job_ids: Sequence[str]) -> None:
        """The worker is about to send these jobs' settlement, which deletes their locks: a
        renewal that finds one gone meanwhile is not a lost lock (a lost one is reported by the
        settlement's own reply). Their locks are still renewed until :meth:`release`, so a
        settlement whose reply is lost keeps them."""
        with self._held_lock:
            self._settling.update((lane, job_id) for job_id in job_ids)

    def release(self, lane: str, job_ids: Sequence[str]) -> None:
        """The jobs were settled: stop renewing their locks."""
        with self._held_lock:
            for job_id in job_ids:
                self._held.pop((lane, job_id), None)
                self._settling.discard((lane, job_id))

    # ------------------------------------------------------------------------------- thread
    def start(self) -> None:
        self._done.clear()
        self._thread = threading.Thread(target=self._maintain, name=f"{self.worker_id}-locks", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop renewing (whatever is still held then expires and is recovered by a stalled check)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=wait_s)

    def _maintain(self) -> None:
        renew_every = self.lock_duration_ms / 2000
        next_stalled_check = 0.0
        while not self._done.wait(timeout=0 if next_stalled_check == 0 else
                                  min(renew_every, self.stalled_interval_ms / 1000)):
            try:
                self.extend_locks()
                if time.monotonic() >= next_stalled_check:
                    self.check_stalled()
                    next_stalled_check = time.monotonic() + self.stalled_interval_ms / 1000
            except Exception as exc:  # noqa: BLE001 - e.g. OOM under maxmemory: keep renewing, say so
                log.warning("worker %s: lock renewal/stalled check failed: %s", self.worker_id, exc)

    # ------------------------------------------------------------------------------- duties
    def extend_locks(self) -> None:
        with self._held_lock:
            held = list(self._held.items())
        tokens = dict(held)
        by_lane: dict[str, list[Any]] = {}
        for (lane, job_id), token in held:
            by_lane.setdefault(lane, []).extend([job_id, token])
        for lane, pairs in by_lane.items():
            lost = self.broker.scripts.call("extendLocks", self.broker.lane_keys[lane],
                                            int(time.time() * 1000), [self.lock_duration_ms, *pairs])
            if not lost:
                continue
            # A job settled while the script ran had its lock deleted by its own settlement (it is
            # settling, or released since): not a lost lock. Only a job still held under the same
            # token, with no settlement on its way, is.
            with self._held_lock:
                gone = [j for j in (job_id.decode() for job_id in lost)
                        if (lane, j) in self._held and self._held[(lane, j)] == tokens.get((lane, j))
                        and (lane, j) not in self._settling]
            self.release(lane, gone)  # gone for good: say it once
            for job_id in gone:
                log.warning("worker %s lost the lock of job %s (lane %s): another worker may run it",
                            self.worker_id, job_id, lane)

    def check_stalled(self) -> None:
        for lane in self.lanes:
            keys = self.broker.lane_keys[lane]
            requeued, failed = self.broker.scripts.call(
                "moveStalledJobsToWait", keys, int(time.time() * 1000),
                [self.max_stalled_count, self.stalled_interval_ms])
            if requeued or failed:
                log.info("stalled check on %s: %d jobs back to wait, %d failed", keys.name,
                         len(requeued), len(failed))
