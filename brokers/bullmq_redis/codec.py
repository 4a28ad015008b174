"""Job options and job hashes in BullMQ's own format, both ways.

BullMQ keeps a job's options as JSON in the job hash under ``opts``, with its own names
(``attempts``, ``backoff``, ``removeOnComplete``...). Writing and reading exactly that format is
what lets the official BullMQ clients and ours share a queue.
"""

from __future__ import annotations

import functools
import json
from functools import lru_cache
from typing import Any

from ..contract import JSON, Backoff, Job, JobOptions, Keep
from . import keys as K


def options_to_opts(options: JobOptions) -> dict[str, Any]:
    """JobOptions -> BullMQ's opts object."""
    opts: dict[str, Any] = {
        "attempts": options.attempts,
        "delay": options.delay_ms,
        "removeOnComplete": options.remove_on_complete,
        "removeOnFail": options.remove_on_fail,
    }
    if options.priority:
        opts["priority"] = options.priority
    if options.backoff is not None:
        opts["backoff"] = options.backoff.to_json()
    if options.job_id is not None:
        opts["jobId"] = options.job_id
    return opts


@lru_cache(maxsize=256)
def opts_json(options: JobOptions) -> str:
    """The opts field of a job hash: cached, since a run uses few distinct option sets."""
    return JSON.encode(options_to_opts(options))


def _keep_from_opts(raw: Any, default: Keep) -> Keep:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw >= 0:
        return raw
    if isinstance(raw, dict):  # {"count": n, "age": s}: we honour the count
        count = raw.get("count")
        return count if isinstance(count, int) and count >= 0 else False
    return default


def options_from_opts(opts: dict[str, Any]) -> JobOptions:
    """BullMQ's opts object (as written by any BullMQ client) -> JobOptions.

    Unknown keys are ignored; a value out of our range is clamped to what it means for us.
    """
    attempts = opts.get("attempts")
    job_id = opts.get("jobId")
    return JobOptions(
        delay_ms=max(_number(opts.get("delay")), 0),
        priority=min(max(_number(opts.get("priority")), 0), 10),
        attempts=max(_number(attempts, 1), 1),
        backoff=Backoff.from_json(opts.get("backoff")),
        job_id=job_id if isinstance(job_id, str) and job_id and not job_id.isdigit()
        and ":" not in job_id else None,
        # BullMQ's default is to keep finished jobs when the option is absent.
        remove_on_complete=_keep_from_opts(opts.get("removeOnComplete"), False),
        remove_on_fail=_keep_from_opts(opts.get("removeOnFail"), False),
    )


def _number(raw: Any, default: int = 0) -> int:
    """An integer option as some client wrote it (number, numeric text), else the default."""
    if isinstance(raw, bool) or raw is None:
        return default
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        return default


def keep_arg(keep: Keep) -> int:
    """remove_on_* -> the ``keep`` argument of moveToFinished.lua (-1 all, 0 none, n newest)."""
    if keep is True:
        return 0
    if keep is False:
        return -1
    return int(keep)


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw is not None else ""


def _int(raw: bytes | None, default: int = 0) -> int:
    try:
        return int(raw) if raw is not None else default
    except (ValueError, OverflowError):
        return default


@functools.lru_cache(maxsize=1024)
def _options_from_raw(raw: bytes) -> JobOptions:
    """The opts field's text -> JobOptions. Most jobs of a queue carry the same opts text, and
    JobOptions is immutable: one parse serves them all (a drain of no-op jobs spent a tenth of
    its time here)."""
    opts = json.loads(raw)
    if not isinstance(opts, dict):
        raise ValueError(f"opts is a {type(opts).__name__}, not an object")
    return options_from_opts(opts)


def job_from_hash(job_id: str, fields: dict[str, bytes], lane: str) -> tuple[Job, str | None]:
    """A job hash -> (Job, reason it must be rejected or None).

    Never raises: a payload that is not JSON, or options that are not BullMQ's (any client may
    have written the hash), give a Job with ``data=None`` and a reason, so the worker fails it
    and goes on.
    """
    reason: str | None = None
    try:
        options = _options_from_raw(fields.get(K.F_OPTS) or b"{}")
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the job is rejected, not the worker
        options, reason = JobOptions(), f"malformed job options: {exc!r}"[:500]
    data: Any = None
    raw_data = fields.get(K.F_DATA)
    if reason is None:
        if raw_data is None:
            reason = "malformed payload: the job has no data field"
        else:
            try:
                data = json.loads(raw_data)
            except Exception as exc:  # noqa: BLE001 - ValueError, UnicodeDecodeError, RecursionError...
                reason = f"malformed payload: not JSON ({exc})"[:500]
    job = Job(
        id=job_id,
        name=_text(fields.get(K.F_NAME)),
        data=data,
        options=options,
        attempts_made=_int(fields.get(K.F_ATTEMPTS_MADE) or fields.get("attemptsMade")),
        deliveries=max(_int(fields.get(K.F_ATTEMPTS_STARTED), 1), 1),
        created_ms=_int(fields.get(K.F_TIMESTAMP)),
        lane=lane,
    )
    return job, reason


def pairs_to_dict(flat: list[bytes]) -> dict[str, bytes]:
    """HGETALL's flat [field, value, ...] reply -> {field: value}; field names decoded."""
    it = iter(flat)
    return {field.decode("utf-8", "replace"): value for field, value in zip(it, it)}
