"""Live 'lost' on Redis looks up every old job that has not run, however long the backlog in
front of it: a loss behind more than 5,000 waiting jobs is found (on the shared Redis, in a
queue of its own, removed at the end)."""

from __future__ import annotations

import time

from benchmarks.live.side import Side
from brokers.contract import JobOptions, JobSpec


def test_a_loss_behind_a_long_backlog_is_found():
    side = Side("redis", lambda kind, text: None, shared=True).start()
    try:
        held = [f"held-{i}" for i in range(6000)]
        producer = side.admin.producer()
        producer.publish_many([JobSpec("user_variables_update", {"n": i}, JobOptions(job_id=job_id))
                               for i, job_id in enumerate(held)])
        producer.close()
        gone = [f"gone-{i}" for i in range(700)]             # accepted after the backlog, never held
        side.tally.accept(held + gone, at=time.time() - 60)
        for _ in range(2):                                   # lost once missing at two checks in a row
            side.lost_checked = 0.0
            side.poll()
        counts = side.state["counts"]
        assert counts["lost"] == len(gone), counts
        assert counts["waiting_to_run"] == len(held), "the held jobs are still waiting, not lost"
    finally:
        side.close()
