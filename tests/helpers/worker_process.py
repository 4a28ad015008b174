"""A worker in its own process, for the SIGKILL test: ``python -m tests.helpers.worker_process``.

It runs jobs of type ``slow`` for a minute (writing their id to --started first, so the test
knows when to kill it) and every other job at once.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from brokers.contract import Job
from brokers.registry import adapter_class


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--started", required=True, type=Path)
    parser.add_argument("--finished", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    options = {"max_priority": 10} if args.kind == "rabbitmq" else {}
    broker = adapter_class(args.kind)(args.url, queue=args.queue, **options)

    def handle(job: Job) -> str:
        if job.name == "slow":
            args.started.write_text(job.id)
            time.sleep(60)
        with args.finished.open("a") as out:
            out.write(job.id + "\n")
        return "ok"

    worker_options = {"lock_duration_ms": 1000, "stalled_interval_ms": 500} if args.kind == "redis" else {}
    broker.worker(handle, concurrency=2, **worker_options).run(timeout=120)


if __name__ == "__main__":
    main()
