"""A worker in its own process, for the SIGKILL test: ``python -m tests.helpers.worker_process``.

It runs jobs of type ``slow`` for a minute (writing their id to --started first, so the test
knows when to kill it) and every other job at once. Its kind's fast-recovery settings make the
jobs of a dead worker come back quickly.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from brokers import registry
from brokers.contract import Job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--started", required=True, type=Path)
    parser.add_argument("--finished", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    driver = registry.get(args.kind)
    url = os.environ["BROKERBENCH_CHILD_URL"]  # not on the command line: anyone can read that
    broker = driver.open(url, queue=args.queue, **driver.priority_options)

    def handle(job: Job) -> str:
        if job.name == "slow":
            partial = args.started.with_suffix(".partial")
            partial.write_text(job.id)
            os.replace(partial, args.started)  # the test never reads a half-written file
            time.sleep(60)
        with args.finished.open("a") as out:
            out.write(job.id + "\n")
        return "ok"

    broker.worker(handle, concurrency=2, **driver.fast_recovery).run(timeout=120)


if __name__ == "__main__":
    main()
