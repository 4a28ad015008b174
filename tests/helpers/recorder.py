"""A thread-safe record of what handlers saw, for assertions."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from brokers.contract import Job


@dataclass
class Seen:
    job_id: str
    name: str
    data: Any
    attempts_made: int
    deliveries: int
    redelivered: bool
    at: float
    worker: str = ""


@dataclass
class Recorder:
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, worker: str = "", fail: Callable[[Job], bool] = lambda job: False,
                sleep: float = 0.0) -> Callable[[Job], Any]:
        def handle(job: Job) -> Any:
            with self.lock:
                self.seen.append(Seen(job.id, job.name, job.data, job.attempts_made, job.deliveries,
                                      job.redelivered, time.time(), worker))
            if sleep:
                time.sleep(sleep)
            if fail(job):
                raise RuntimeError(f"planned failure of {job.id} (attempt {job.attempts_made + 1})")
            return {"done": job.id}
        return handle

    def ids(self) -> list[str]:
        with self.lock:
            return [s.job_id for s in self.seen]

    def counts(self) -> Counter[str]:
        return Counter(self.ids())

    def of(self, job_id: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.job_id == job_id]
