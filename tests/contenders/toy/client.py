"""A client registered from outside brokerbench, as a newcomer would add one: this module names
it (``CLIENT``), ``BROKERBENCH_CLIENTS=tests.contenders.toy.client`` (or the entry point group
``brokerbench.clients``) registers it, and no file of brokerbench changes. Its role program,
role.py beside this file, is a toy queue on Redis lists that speaks the role protocol."""

from __future__ import annotations

import sys
from pathlib import Path

import redis

from brokers.clients import HARNESS_OPTIONS, Client
from brokers.contract import QueueStats

HERE = Path(__file__).resolve().parent


class ToyQueue:
    """The harness's view of a toy queue (its keys are its own: the server's BullMQ-style
    adapter would count nothing): jobs waiting in ``toy:{queue}:wait``, jobs held in the
    workers' busy lists; ``remove()`` deletes them all."""

    def __init__(self, url: str, queue: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.wait, self.busy = f"toy:{queue}:wait", f"toy:{queue}:busy:*"

    def _busy_keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=self.busy, count=1000))

    def stats(self) -> QueueStats:
        with self.client.pipeline(transaction=False) as p:
            p.llen(self.wait)
            for key in self._busy_keys():
                p.llen(key)
            waiting, *busy = p.execute()
        return QueueStats(waiting=waiting, active=sum(busy), delayed=0, completed=None, failed=None)

    def remove(self) -> None:
        self.client.delete(self.wait, *self._busy_keys())

    def close(self) -> None:
        self.client.close()


CLIENT = Client(
    name="toy-redis-list", label="toy (Python, Redis lists)", server="redis", official=False,
    command=(sys.executable, str(HERE / "role.py")), cwd=HERE,
    role_options={},                  # it takes no adapter option: a level that needs one is refused
    server_side=HARNESS_OPTIONS,      # the harness's own (reconnect window, queue): not the role's business
    notes="two Redis lists per queue, one job at a time, no recovery of a killed worker's jobs",
    queue_admin=ToyQueue,             # its keys are its own: the harness counts the backlog with this
)
