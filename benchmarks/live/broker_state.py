"""Each broker's queue state, in its own words, for the live view.

BullMQ-style Redis: the length of each of its keys (wait, prioritized, active, delayed,
completed, failed), summed over lanes; which of a list of jobs it no longer has (their job hashes,
looked up in pipelined chunks); one job's keys on demand (its hash and its lock's TTL).
RabbitMQ: ready messages in the lane queues, the delay queues and the dead-letter queue (AMQP
reports these); unacknowledged messages only ``rabbitmqctl`` can tell (about 0.8 s a call), so a
private node is asked in the background every few seconds and the page shows the last answer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

UNACKED_EVERY_S = 2.0
MISSING_CHUNK = 1000    # job ids looked up per pipelined round trip


def read_state(kind: str, admin: Any, instance: Any) -> dict[str, Any]:
    if hasattr(admin, "lane_keys"):
        return _redis(admin)
    if hasattr(admin, "topology"):
        return _amqp(admin, instance)
    return {k: v for k, v in admin.stats().as_dict().items()}


def _redis(admin: Any) -> dict[str, Any]:
    pipe = admin.client.pipeline(transaction=False)
    for keys in admin.lane_keys.values():
        pipe.llen(keys.wait).zcard(keys.prioritized).llen(keys.active).zcard(keys.delayed)
        pipe.zcard(keys.completed).zcard(keys.failed)
    counts = pipe.execute()
    names = ("waiting", "prioritized", "active", "delayed", "completed", "failed")
    out = dict.fromkeys(names, 0)
    for i in range(0, len(counts), len(names)):
        for name, value in zip(names, counts[i:i + len(names)]):
            out[name] += value
    return out


_unacked: dict[int, tuple[float, int | None]] = {}     # id(instance) -> (asked at, answer)
_asking: set[int] = set()


def _amqp(admin: Any, instance: Any) -> dict[str, Any]:
    t = admin.topology
    depth = admin.queue_depth
    out: dict[str, Any] = {
        "waiting": sum(depth(t.lane_queue(lane)) or 0 for lane in admin.lanes),
        "delayed": sum(depth(q) or 0 for q in t.delay_queues()),
        "dead_letter": depth(t.dead_queue) or 0,
        "unacked": None, "unacked_age_s": None,
    }
    if instance is not None and hasattr(instance, "ctl"):
        key = id(instance)
        asked, value = _unacked.get(key, (0.0, None))
        if time.monotonic() - asked > UNACKED_EVERY_S and key not in _asking:
            _asking.add(key)
            threading.Thread(target=_ask_unacked, args=(instance, admin.queue), daemon=True).start()
        out["unacked"] = value
        out["unacked_age_s"] = round(time.monotonic() - asked, 1) if asked else None
    return out


def _ask_unacked(instance: Any, prefix: str) -> None:
    key = id(instance)
    try:
        done = instance.ctl("list_queues", "name", "messages_unacknowledged", "-q", "--no-table-headers",
                            timeout=10)
        total = 0
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith(prefix) and parts[1].isdigit():
                total += int(parts[1])
        _unacked[key] = (time.monotonic(), total if done.returncode == 0 else None)
    except Exception:  # noqa: BLE001 - a node being killed does not answer
        _unacked[key] = (time.monotonic(), None)
    finally:
        _asking.discard(key)


def redis_missing(admin: Any, ids: list[str], chunk: int = MISSING_CHUNK) -> list[str]:
    """Which of ``ids`` have no job hash in any lane: jobs the broker no longer has. Every id is
    looked up (EXISTS per lane), ``chunk`` ids per pipelined round trip, so no one round trip
    holds Redis for long however many ids there are."""
    lanes = list(admin.lane_keys.values())
    missing: list[str] = []
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        pipe = admin.client.pipeline(transaction=False)
        for job_id in part:
            for keys in lanes:
                pipe.exists(keys.job(job_id))
        found = pipe.execute()
        missing += [job_id for i, job_id in enumerate(part) if not any(found[i * len(lanes):(i + 1) * len(lanes)])]
    return missing


def redis_job(admin: Any) -> dict[str, Any]:
    """The keys of one job (the first running one, else the first waiting one): what BullMQ
    stores for it and how long its lock has left."""
    client = admin.client
    for lane, keys in admin.lane_keys.items():
        for where, ids in (("active", client.lrange(keys.active, -1, -1)), ("wait", client.lrange(keys.wait, -1, -1))):
            if not ids:
                continue
            job_id = ids[0].decode() if isinstance(ids[0], bytes) else str(ids[0])
            fields = {_text(k): _text(v)[:300] for k, v in client.hgetall(keys.job(job_id)).items()}
            return {"lane": lane, "list": where, "id": job_id, "key": keys.job(job_id), "hash": fields,
                    "lock_key": keys.lock(job_id), "lock_ttl_ms": client.pttl(keys.lock(job_id))}
    return {"id": None, "note": "no job is waiting or running"}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
