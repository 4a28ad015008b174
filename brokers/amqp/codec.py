"""Jobs as AMQP messages: the body is the job's JSON data; everything else is in properties.

properties: message_id = job id, type = job name, content_type = application/json,
            delivery_mode = 2 (persistent) or 1, priority (see Topology.amqp_priority),
            timestamp = publish time in seconds (AMQP's own field).
headers:    bb-created-ms   publish time in ms
            bb-attempts     attempts allowed          bb-attempts-made  failed attempts so far
            bb-backoff      "fixed:<ms>" or "exponential:<ms>"
            bb-priority     the job's priority (BullMQ scale)
            bb-remove-on-fail  1 to drop instead of dead-lettering after the last attempt
            bb-failed-reason, bb-failed-at-ms  on dead-lettered messages
            bb-delay-bit-N  bit N of a delayed message's delay ("1"/"0"): routes it through the
                            delay levels (see topology.py)
            x-delivery-count  set by quorum queues: deliveries before this one
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pika import BasicProperties

from ..contract import Backoff, BackoffType, Job, JobOptions

H_CREATED = "bb-created-ms"
H_ATTEMPTS = "bb-attempts"
H_ATTEMPTS_MADE = "bb-attempts-made"
H_BACKOFF = "bb-backoff"
H_PRIORITY = "bb-priority"
H_REMOVE_ON_FAIL = "bb-remove-on-fail"
H_FAILED_REASON = "bb-failed-reason"
H_FAILED_AT = "bb-failed-at-ms"
H_DELIVERY_COUNT = "x-delivery-count"
H_DELAY_BITS = "bb-delay-bit-"  # one per bit of a delay: which delay levels a message passes


def new_job_id() -> str:
    return uuid.uuid4().hex


def build_properties(job_id: str, name: str, options: JobOptions, *, persistent: bool,
                     amqp_priority: int, attempts_made: int = 0,
                     created_ms: int | None = None) -> BasicProperties:
    created = created_ms if created_ms is not None else int(time.time() * 1000)
    headers: dict[str, Any] = {H_CREATED: created, H_ATTEMPTS: options.attempts,
                               H_ATTEMPTS_MADE: attempts_made}
    if options.backoff is not None:
        headers[H_BACKOFF] = f"{options.backoff.type.value}:{options.backoff.delay_ms}"
    if options.priority:
        headers[H_PRIORITY] = options.priority
    if options.remove_on_fail is True:
        headers[H_REMOVE_ON_FAIL] = 1
    return BasicProperties(
        message_id=job_id, type=name, content_type="application/json",
        delivery_mode=2 if persistent else 1, priority=amqp_priority or None,
        timestamp=created // 1000, headers=headers)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def options_from_headers(headers: dict[str, Any]) -> JobOptions:
    key = (headers.get(H_ATTEMPTS), headers.get(H_BACKOFF), headers.get(H_PRIORITY),
           headers.get(H_REMOVE_ON_FAIL))
    try:
        options = _OPTIONS_CACHE.get(key)
    except TypeError:  # a header value that cannot be hashed (a table, a list): no cache
        return _options_from_headers(headers)
    if options is None:
        if len(_OPTIONS_CACHE) > 1024:
            _OPTIONS_CACHE.clear()
        options = _OPTIONS_CACHE[key] = _options_from_headers(headers)
    return options


_OPTIONS_CACHE: dict[tuple[Any, ...], JobOptions] = {}  # few distinct option sets in practice


def _options_from_headers(headers: dict[str, Any]) -> JobOptions:
    backoff = None
    raw = headers.get(H_BACKOFF)
    if isinstance(raw, (bytes, str)):
        text = raw.decode() if isinstance(raw, bytes) else raw
        kind, _, delay = text.partition(":")
        if kind in ("fixed", "exponential"):
            backoff = Backoff(BackoffType(kind), max(_int(delay, 0), 0))
    return JobOptions(
        attempts=max(_int(headers.get(H_ATTEMPTS), 1), 1),
        backoff=backoff,
        priority=min(max(_int(headers.get(H_PRIORITY), 0), 0), 10),
        remove_on_fail=bool(headers.get(H_REMOVE_ON_FAIL)),
    )


def job_from_message(props: BasicProperties, body: bytes, redelivered: bool,
                     lane: str) -> tuple[Job, str | None]:
    """A delivered message -> (Job, reason to reject it or None). Never raises: whatever a
    client put in the headers or the body, the message is rejected, not the worker."""
    headers = props.headers if isinstance(props.headers, dict) else {}
    try:
        options = options_from_headers(headers)
    except Exception as exc:  # noqa: BLE001
        options, bad = JobOptions(), f"malformed job options in headers: {exc!r}"[:500]
    else:
        bad = None
    attempts_made = max(_int(headers.get(H_ATTEMPTS_MADE), 0), 0)
    earlier = _int(headers.get(H_DELIVERY_COUNT), 1 if redelivered else 0)  # quorum queues count
    job = Job(id=str(props.message_id or f"no-id-{uuid.uuid4().hex[:8]}"), name=str(props.type or ""),
              data=None, options=options, attempts_made=attempts_made,
              deliveries=attempts_made + 1 + max(earlier, 1 if redelivered else 0),
              created_ms=_int(headers.get(H_CREATED), 0), lane=lane)
    if bad:
        return job, bad
    if not props.type:
        return job, "malformed message: no job type (AMQP 'type' property)"
    try:
        job.data = json.loads(body)
    except Exception as exc:  # noqa: BLE001 - ValueError, UnicodeDecodeError, RecursionError...
        return job, f"malformed payload: not JSON ({exc})"[:500]
    return job, None


def republish_properties(props: BasicProperties, updates: dict[str, Any]) -> BasicProperties:
    """A copy of ``props`` for re-publishing (retry or dead letter), headers updated."""
    headers = dict(props.headers or {})
    for key in [k for k in headers if k == H_DELIVERY_COUNT or k.startswith(("x-death", "x-first-death",
                                                                             "x-last-death", H_DELAY_BITS))]:
        del headers[key]
    headers.update(updates)
    return BasicProperties(
        message_id=props.message_id, type=props.type, content_type=props.content_type,
        delivery_mode=props.delivery_mode, priority=props.priority, timestamp=props.timestamp,
        headers=headers)
