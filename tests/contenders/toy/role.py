"""A toy client's role program: the smallest queue a newcomer could put on Redis (two lists per
queue), speaking brokerbench's role protocol (benchmarks/contenders/protocol.py) on its stdin
and stdout. It imports nothing of brokerbench: a role program may be written in any language.

Keys (its own, beside nothing of BullMQ's): ``toy:{queue}:wait`` (a list of JSON jobs, pushed
on the left, taken from the right) and ``toy:{queue}:busy:{pid}`` (the jobs one worker holds,
moved there atomically by LMOVE). Delivery: at-least-once for a worker that stops cleanly; a
killed worker's busy list is never taken back (the toy has no recovery), so its jobs are lost:
enough for a toy, and why real queues have locks or acks.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue as queue_module
import sys
import threading
import time
import uuid

import redis

POISON = "poison_workflow"


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def fail(text: str) -> None:
    send({"type": "error", "message": text, "fatal": True})
    sys.exit(1)


def perform(name: str, data: dict, cpu_share: dict) -> None:
    """Compute for work_ms x share (hashing), then wait for the rest; a poison job raises."""
    if name == POISON:
        raise RuntimeError("poison job")
    work_ms = float(data.get("work_ms") or 0)
    share = float(cpu_share.get(name, 0.1))
    deadline = time.perf_counter() + work_ms * share / 1000
    digest = b""
    while time.perf_counter() < deadline:
        digest = hashlib.sha256(digest + b"toy").digest()
    time.sleep(work_ms * (1 - share) / 1000)


def main() -> None:
    lines: queue_module.Queue = queue_module.Queue()

    def pump() -> None:   # stdin on a thread of its own, so a worker reads "stop" between jobs
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)   # end of file: the harness is gone

    threading.Thread(target=pump, daemon=True).start()
    first = lines.get()
    if first is None:   # the harness went away before it said anything
        return
    setup = json.loads(first)
    if setup.get("type") != "setup" or setup.get("protocol") != 1:
        fail(f"{setup.get('type')} before setup: the first line must be a setup of protocol 1")
    if setup.get("options"):
        fail(f"toy-redis-list has no option {', '.join(sorted(setup['options']))}; it takes none")
    r = redis.Redis.from_url(setup["url"])
    r.ping()
    wait = f"toy:{setup['queue']}:wait"
    send({"type": "ready", "client": {"name": "toy-redis-list", "runtime": f"python {sys.version.split()[0]}",
                                      "libraries": {"redis": redis.__version__}}, "clock_ns": time.monotonic_ns()})
    if setup["role"] == "producer":
        produce(r, wait, lines)
    else:
        work(r, wait, lines, setup)


def produce(r: redis.Redis, wait: str, lines: queue_module.Queue) -> None:
    while (line := lines.get()) is not None:
        message = json.loads(line)
        if message["type"] == "stop":
            return
        jobs = message["jobs"]
        ids = [job.get("id") or uuid.uuid4().hex for job in jobs]
        encoded = [json.dumps({"id": i, "name": j["name"], "data": j["data"], "attempts": j.get("attempts", 1),
                               "made": 0}) for i, j in zip(ids, jobs)]
        seqs = [job["seq"] for job in jobs]
        try:
            r.lpush(wait, *encoded)
        except redis.ResponseError as exc:   # Redis said no: nothing was pushed
            send({"type": "failed", "seqs": seqs, "fate": "refused", "error": str(exc)})
        except redis.RedisError as exc:      # no reply: it may have been pushed
            send({"type": "failed", "seqs": seqs, "fate": "in_doubt", "error": str(exc)})
        else:
            send({"type": "accepted", "seqs": seqs, "ids": ids, "t_ns": time.monotonic_ns()})


def work(r: redis.Redis, wait: str, lines: queue_module.Queue, setup: dict) -> None:
    busy = f"{wait.rsplit(':', 1)[0]}:busy:{os.getpid()}"
    report = {"completed": 0, "failed": 0, "retried": 0, "lost_lock": 0, "redelivered": 0, "reconnects": 0}
    consuming = False
    while True:
        try:
            line = lines.get(timeout=0 if consuming else None)
        except queue_module.Empty:
            line = ""
        if line is None:   # the harness is gone: stop at once
            return
        if line:
            kind = json.loads(line)["type"]
            if kind == "stop":
                send({"type": "done", "report": report})
                return
            consuming = consuming or kind == "consume"
            continue
        raw = r.blmove(wait, busy, 0.1, "RIGHT", "LEFT")   # one job at a time: concurrency 1
        if raw is None:
            continue
        job = json.loads(raw)
        start, error = time.monotonic_ns(), None
        try:
            perform(job["name"], job["data"], setup.get("cpu_share") or {})
        except Exception as exc:  # noqa: BLE001 - the job failed; the toy retries it
            error = exc
        final = error is None or job["made"] + 1 >= job["attempts"]
        trace = job["data"].get("trace") if isinstance(job["data"], dict) else None
        send({"type": "ran", "id": job["id"], "name": job["name"], "trace": trace, "start_ns": start,
              "end_ns": time.monotonic_ns(), "redelivered": False, "attempts_made": job["made"], "final": final})
        with r.pipeline() as p:   # settle: retry by pushing it back, then forget it (one transaction)
            if not final:
                p.lpush(wait, json.dumps({**job, "made": job["made"] + 1}))
            p.lrem(busy, 1, raw)
            p.execute()
        report["completed" if error is None else "failed" if final else "retried"] += 1


if __name__ == "__main__":
    main()
