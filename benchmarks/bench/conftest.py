"""Fixtures for ``pytest benchmarks/bench --benchmark-only`` (pytest-benchmark).

BROKERBENCH_PROFILE=tiny makes every benchmark small, so CI can run them all quickly.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any, Iterator

import pytest

from brokers import registry
from brokers.contract import Broker
from brokers.provision import find

TINY = os.environ.get("BROKERBENCH_PROFILE") == "tiny"


@pytest.fixture(params=registry.compared_kinds())
def bench_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    broker = registry.get(request.param).open(find(request.param).url, queue=f"bench-{uuid.uuid4().hex[:8]}")
    yield broker
    broker.remove()
    broker.close()


class Echo:
    """A worker running in a thread that signals each job it finishes."""

    def __init__(self, broker: Broker) -> None:
        self.done = threading.Event()
        self.worker = broker.worker(self._handle, concurrency=1)
        self.thread = self.worker.start_in_thread(timeout=600)

    def _handle(self, job: Any) -> None:
        self.done.set()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)


@pytest.fixture
def echo(bench_broker: Broker) -> Iterator[Echo]:
    running = Echo(bench_broker)
    yield running
    running.stop()
