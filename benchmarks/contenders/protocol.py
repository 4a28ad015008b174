"""The role protocol: how the harness drives a producer or a worker written in any language.

A contender's role (the official BullMQ on Node, amqplib, ...) is a process of its own that
reads JSON lines on its stdin and writes JSON lines on its stdout: one UTF-8 object per line,
each with a ``"type"``. Anything else it prints goes to stderr (kept for the error message when
the role fails). :file:`protocol.schema.json` beside this file is the schema of every message;
:func:`check` validates one, and tests/contenders/test_role_protocol.py is the conformance test
every role program must pass.

Clocks: every ``*_ns`` field is CLOCK_MONOTONIC in nanoseconds (Python's
``time.monotonic_ns()``, Node's ``process.hrtime.bigint()``), one clock for every process of the
host; ``ready`` carries the role's reading so the harness can refuse a role on another clock.

Harness -> role
===============
``setup``   first line, once: ``role`` ("producer" or "worker"), ``index``, ``url`` (with its
            credentials: they travel on the pipe, never on a command line), ``queue``, ``options``
            (the durability level's settings in the server's words: ``persistent``, ``confirms``,
            ``queue_type``, ``amqp_queue`` (the queue to publish to and consume from), ...; a role
            refuses a setting it does not know with an ``error``), and for a worker ``concurrency``,
            ``prefetch`` and ``cpu_share`` (job type -> the share of a job's ``work_ms`` spent
            computing; the rest is spent waiting).
``publish`` producer: publish ``jobs`` (each ``seq``, ``name``, ``data``, ``attempts``, and
            optionally ``id``: the job's id when the harness chooses it, BullMQ's ``jobId``, AMQP's
            ``message_id``; without it the client chooses) as ONE call of the client (one add /
            publish for one job; the client's bulk call for more), and answer once the broker
            answered every job of it. ``data`` is opaque: publish it as is. The harness sends
            ahead (up to a window of unanswered jobs): a role handles its ``publish`` lines one
            after the other, in order, each call awaited as its client awaits it, and reads the
            next line only when the previous call is answered.
``consume`` worker: start taking jobs (after ``setup``; in drain mode the harness sends it once
            the queue is filled).
``stop``    producer: close and exit. Worker: stop taking jobs, finish and settle those running,
            send ``done``, exit. A role that reads end of file on stdin (its harness died) exits at
            once, settling nothing more.

Role -> harness
===============
``ready``    once, after connecting: ``client`` (name, library versions, runtime) and ``clock_ns``.
``accepted`` producer: ``seqs`` of a ``publish`` the broker accepted (Redis: the add returned;
             AMQP: confirmed), their ``ids``, and ``t_ns``, when the role saw the acceptance.
``failed``   producer: ``seqs`` the broker did not accept, with ``fate`` ("refused": the broker said
             no, nothing of them is queued; "in_doubt": no answer, they may be queued) and ``error``.
             Every seq of a ``publish`` is answered by exactly one ``accepted`` or ``failed``.
``ran``      worker: a run of a job ended: ``id``, ``name``, the ``trace`` the job's data carried
             (echoed as is), ``start_ns``, ``end_ns``, ``redelivered`` (the broker says it was
             handed out before), ``attempts_made`` (failed attempts before this run), ``final``
             (no attempt of the job follows this run). Written BEFORE the run is settled with the
             broker, so a role killed between the two still counts the run.
``done``     worker, last line: ``report``, counts of settlements the broker took (``completed``,
             ``failed``, ``retried``, ``lost_lock``: the run's settlement was refused because the
             job had gone back, ``redelivered``, ``reconnects``).
``error``    anything else that went wrong: ``message``, and ``fatal`` (the role stops).

What a run of a job does (a worker): ``name == "poison_workflow"`` raises (the job fails and is
retried by its ``attempts``); otherwise it computes for ``work_ms x cpu_share[name]`` ms (any
computation, e.g. hashing the payload) and then waits for the rest of ``work_ms``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")
TO_ROLE = ("setup", "publish", "consume", "stop")
FROM_ROLE = ("ready", "accepted", "failed", "ran", "done", "error")


class ProtocolError(ValueError):
    """A line that is not a message of the role protocol."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=1)
def _validators() -> dict[str, Any]:
    """One validator per message type (the schema's ``oneOf`` branches): a message is checked
    against its own type's branch only, and the schema itself once, not per message."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return {branch["properties"]["type"]["const"]: cls(branch) for branch in schema()["oneOf"]}


_RAN_KEYS = frozenset(("type", "id", "name", "trace", "start_ns", "end_ns", "redelivered", "attempts_made",
                       "final"))


def _int(value: Any) -> bool:
    return type(value) is int   # JSON integers; a bool is not one


def _plainly_valid_ran(message: dict[str, Any]) -> bool:
    """The schema's rules for a ``ran`` line, checked by hand: one arrives per job, and the
    generic validator costs ~45 µs a line (as much as a fast client spends on the job). Only
    ever accepts what the schema accepts (tests/contenders/test_role_protocol.py checks both
    agree); anything it does not accept goes to the schema, which says why."""
    return (message.keys() == _RAN_KEYS and type(message["id"]) is str and type(message["name"]) is str
            and (message["trace"] is None or type(message["trace"]) is list)
            and _int(message["start_ns"]) and _int(message["end_ns"])
            and type(message["redelivered"]) is bool and type(message["final"]) is bool
            and _int(message["attempts_made"]) and message["attempts_made"] >= 0)


def check(message: Any) -> dict[str, Any]:
    """``message`` if it is a valid message of either direction; a ProtocolError saying why not."""
    import jsonschema

    if isinstance(message, dict) and message.get("type") == "ran" and _plainly_valid_ran(message):
        return message
    kind = message.get("type") if isinstance(message, dict) else None
    validator = _validators().get(kind) if isinstance(kind, str) else None
    if validator is None:
        raise ProtocolError(f"not a role-protocol message: type {kind!r} is none of {', '.join(_validators())}")
    try:
        validator.validate(message)
    except jsonschema.ValidationError as exc:
        raise ProtocolError(f"not a role-protocol message ({kind}): {exc.message}") from None
    return message


def parse(line: bytes | str) -> dict[str, Any]:
    """One line from a role, decoded and checked."""
    try:
        message = json.loads(line)
    except ValueError:
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        raise ProtocolError(f"not a JSON line: {text[:200]!r}") from None
    return check(message)


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line (compact JSON, newline-terminated)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
