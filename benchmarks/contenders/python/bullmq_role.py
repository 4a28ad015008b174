"""The official BullMQ for Python (the ``bullmq`` package, asyncio) as a role program, written
as its users write it: a ``Queue`` whose ``add`` (``addBulk`` for a batch) each call awaits, a
``Worker`` with the run's concurrency and BullMQ's lock and stalled-check settings unless a
scenario gives others, ``removeOnComplete`` as our adapter does. A job's run is reported before
the processor returns, so before BullMQ settles it (the protocol's order).

    python -m benchmarks.contenders.python.bullmq_role     (then the role protocol on stdin/stdout)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

from . import role_io

NAME = "bullmq-python"
WORKER_OPTIONS = {"lock_duration_ms": "lockDuration", "stalled_interval_ms": "stalledInterval",
                  "max_stalled_count": "maxStalledCount"}
REFUSED = re.compile(r"^(OOM|READONLY|NOAUTH|WRONGPASS|ERR)\b")


def fate(exc: BaseException) -> str:
    """A Redis error reply means the add did not run (a script runs whole or not at all);
    anything else (a dropped connection, a timeout) leaves it in doubt."""
    return "refused" if REFUSED.match(str(exc)) else "in_doubt"


async def producer(setup: dict[str, Any], lines: asyncio.StreamReader) -> None:
    from bullmq import Queue

    queue = Queue(setup["queue"], {"connection": setup["url"]})
    role_io.ready(role_io.client_record(NAME, "bullmq", "redis"))
    try:
        while True:
            line = await role_io.next_line(lines)
            if line is None:   # the harness is gone: exit at once
                os._exit(0)
            message = json.loads(line)
            if message["type"] == "stop":
                return
            if message["type"] != "publish":
                continue
            jobs = message["jobs"]
            seqs = [j["seq"] for j in jobs]

            def opts(j: dict[str, Any]) -> dict[str, Any]:
                return {"attempts": j.get("attempts", 1), "removeOnComplete": True,
                        **({"jobId": j["id"]} if j.get("id") else {})}
            try:
                if len(jobs) == 1:
                    added = [await queue.add(jobs[0]["name"], jobs[0]["data"], opts(jobs[0]))]
                else:
                    added = await queue.addBulk([{"name": j["name"], "data": j["data"], "opts": opts(j)}
                                                 for j in jobs])
            except Exception as exc:  # noqa: BLE001 - every failure is a fate the harness counts
                role_io.send({"type": "failed", "seqs": seqs, "fate": fate(exc), "error": str(exc)[:300]})
            else:
                role_io.send({"type": "accepted", "seqs": seqs, "ids": [str(job.id) for job in added],
                              "t_ns": time.monotonic_ns()})
    finally:
        await queue.close()


async def worker(setup: dict[str, Any], lines: asyncio.StreamReader) -> None:
    from bullmq import Worker

    report = role_io.empty_report()
    cpu_share = setup.get("cpu_share") or {}
    finals: dict[str, bool] = {}

    async def process(job: Any, token: str) -> None:
        start = time.monotonic_ns()
        # attemptsStarted counts every take; more than the failed attempts + this one means an
        # earlier run never settled (its lock expired and the stalled check put it back).
        redelivered = (getattr(job, "attemptsStarted", 0) or 0) > job.attemptsMade + 1
        if redelivered:
            report["redelivered"] += 1
        error: BaseException | None = None
        try:
            await role_io.perform_async(job.name, job.data, cpu_share)
        except Exception as exc:  # noqa: BLE001 - the job failed; BullMQ retries it by its attempts
            error = exc
        final = error is None or job.attemptsMade + 1 >= int(job.opts.get("attempts", 1) or 1)
        finals[str(job.id)] = final
        role_io.send({"type": "ran", "id": str(job.id), "name": job.name, "trace": role_io.trace_of(job.data),
                      "start_ns": start, "end_ns": time.monotonic_ns(), "redelivered": redelivered,
                      "attempts_made": job.attemptsMade, "final": final})
        if error is not None:
            raise error

    options: dict[str, Any] = {"connection": setup["url"], "concurrency": setup.get("concurrency") or 1,
                               "autorun": False}
    for ours, theirs in WORKER_OPTIONS.items():
        if ours in (setup.get("options") or {}):
            options[theirs] = setup["options"][ours]
    w = Worker(setup["queue"], process, options)

    def completed(job: Any, *_: Any) -> None:
        report["completed"] += 1
        finals.pop(str(job.id), None)

    def failed(job: Any, *_: Any) -> None:
        if job is None:
            return
        report["failed" if finals.pop(str(job.id), True) else "retried"] += 1

    def errored(exc: Any, *_: Any) -> None:
        if re.search(r"Missing lock|lock mismatch", str(exc), re.I):
            report["lost_lock"] += 1
        else:
            role_io.send({"type": "error", "message": f"worker: {str(exc)[:300]}", "fatal": False})

    w.on("completed", completed)
    w.on("failed", failed)
    w.on("error", errored)
    role_io.ready(role_io.client_record(NAME, "bullmq", "redis"))
    running: asyncio.Future | None = None
    while True:
        line = await role_io.next_line(lines)
        if line is None:   # the harness is gone: exit at once, settling nothing more
            os._exit(0)
        kind = json.loads(line)["type"]
        if kind == "consume" and running is None:
            running = asyncio.ensure_future(w.run())
        elif kind == "stop":
            await w.close()
            if running is not None:
                await asyncio.gather(running, return_exceptions=True)
            role_io.send({"type": "done", "report": report})
            return


async def run_role() -> None:
    """Read the setup and run the role, every line read by the event loop itself (a line handed
    over from a thread would cost each add a hop the library's own users do not pay)."""
    lines = await role_io.stdin_reader()
    setup = role_io.parse_setup(await role_io.next_line(lines), NAME, tuple(WORKER_OPTIONS))
    if not str(setup["url"]).startswith(("redis://", "rediss://")):
        role_io.fail(f"{NAME} takes a redis:// URL, not {str(setup['url']).split(':')[0]}://")
    await (producer if setup["role"] == "producer" else worker)(setup, lines)


def main() -> None:
    try:
        asyncio.run(run_role())
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - told to the harness, then the role ends
        role_io.fail(f"{type(exc).__name__}: {exc}")
    raise SystemExit(0)


if __name__ == "__main__":
    main()
