"""What every Python role program needs: the protocol's lines on stdin and stdout, the seed's
job work (as benchmarks/contenders/node/work.mjs does it), and the fates of a failed call.

The role programs import this and their client library only, never our adapters: what they
measure is the library, driven the way its own users drive it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue as queue_module
import sys
import threading
import time
from importlib import metadata
from typing import Any

POISON = "poison_workflow"
LINE_LIMIT = 64 * 1024 * 1024  # the longest line an asyncio role reads (a publish of a big batch)
_out = threading.Lock()


def send(message: dict[str, Any]) -> None:
    """One line on stdout, whole (a role's threads may send at once)."""
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def fail(text: str, fatal: bool = True) -> None:
    send({"type": "error", "message": str(text), "fatal": fatal})
    if fatal:
        sys.stdout.flush()
        raise SystemExit(1)


class DirectLines:
    """The harness's lines, read on the calling thread (``get`` blocks; None at end of file):
    for a role that does nothing while it waits for the next line (a producer), so no line
    crosses a thread on its way in."""

    def get(self) -> str | None:
        while line := sys.stdin.readline():
            if line.strip():
                return line
        return None


def stdin_lines() -> queue_module.Queue:
    """The harness's lines, read on a thread of their own; None at end of file (the harness is
    gone: the role exits at once, settling nothing more). For a role whose own loop must not
    block on stdin (a worker polling its connection between lines)."""
    lines: queue_module.Queue = queue_module.Queue()

    def pump() -> None:
        for line in sys.stdin:
            if line.strip():
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name="stdin").start()
    return lines


async def stdin_reader() -> asyncio.StreamReader:
    """The harness's lines for an asyncio role, read by its own event loop (stdin is a pipe)."""
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def next_line(reader: asyncio.StreamReader) -> str | None:
    """The next non-empty line of an asyncio role; None at end of file."""
    while line := await reader.readline():
        if line.strip():
            return line.decode()
    return None


def read_setup(lines: Any, name: str, known: tuple[str, ...]) -> dict[str, Any]:
    """The first line (``lines.get()``), a setup of protocol 1; see :func:`parse_setup`."""
    return parse_setup(lines.get(), name, known)


def parse_setup(first: str | None, name: str, known: tuple[str, ...]) -> dict[str, Any]:
    """A setup line of protocol 1; refuses an option it does not know, by name. None (no line:
    the harness is gone) ends the role."""
    if first is None:
        raise SystemExit(0)
    try:
        setup = json.loads(first)
    except ValueError:
        fail(f"not a JSON line: {first[:200]}")
    if setup.get("type") != "setup":
        fail(f"{setup.get('type')} before setup")
    if setup.get("protocol") != 1:
        fail(f"protocol {setup.get('protocol')}: this role speaks protocol 1")
    unknown = sorted(set(setup.get("options") or {}) - set(known))
    if unknown:
        fail(f"{name} has no option {', '.join(unknown)}; it takes {', '.join(known) or 'none'}")
    return setup


def client_record(name: str, *packages: str) -> dict[str, Any]:
    return {"name": name, "runtime": f"python {sys.version.split()[0]}",
            "libraries": {p: metadata.version(p) for p in packages}}


def ready(client: dict[str, Any]) -> None:
    send({"type": "ready", "client": client, "clock_ns": time.monotonic_ns()})


def _compute(name: str, data: Any, cpu_share: dict[str, float]) -> float:
    """The computing part of a run; returns the ms left to wait. A poison job raises."""
    if name == POISON:
        raise RuntimeError("poison job: this handler always fails")
    work_ms = float(data.get("work_ms") or 0) if isinstance(data, dict) else 0.0
    if work_ms <= 0:
        return 0.0
    share = float(cpu_share.get(name, 0.1))
    blob = json.dumps(data.get("context") or data.get("variables") or data).encode()
    deadline = time.perf_counter() + work_ms * share / 1000
    digest = b""
    while True:
        digest = hashlib.sha256(blob + digest).digest()
        if time.perf_counter() >= deadline:
            break
    return work_ms * (1 - share)


def perform(name: str, data: Any, cpu_share: dict[str, float]) -> None:
    wait_ms = _compute(name, data, cpu_share)
    if wait_ms > 0:
        time.sleep(wait_ms / 1000)


async def perform_async(name: str, data: Any, cpu_share: dict[str, float]) -> None:
    wait_ms = _compute(name, data, cpu_share)
    if wait_ms > 0:
        await asyncio.sleep(wait_ms / 1000)


def trace_of(data: Any) -> Any:
    trace = data.get("trace") if isinstance(data, dict) else None
    return trace if isinstance(trace, list) else None


def empty_report() -> dict[str, int]:
    return {"completed": 0, "failed": 0, "retried": 0, "lost_lock": 0, "redelivered": 0, "reconnects": 0}
