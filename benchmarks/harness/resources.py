"""CPU seconds of the broker process and of the client processes, with psutil.

The broker's pid is found only when it runs on this host, by its driver (Redis tells its own
pid; RabbitMQ's Erlang VM is the process listening on the AMQP port). In a container or on
another host the broker's CPU is reported as unknown (None), never guessed.
"""

from __future__ import annotations

import psutil

from brokers import registry


def broker_pid(kind: str, url: str) -> int | None:
    """The broker's pid when it runs on this host (its driver knows how to find it), else None."""
    return registry.get(kind).server_pid(url)


def cpu_seconds(pid: int | None, children: bool = False, own: bool = True) -> float | None:
    """User + system CPU seconds a process has used so far; with ``children``, its children's
    too, before and after they ended; without ``own``, its children's alone (a role that runs a
    contender's program: the program's CPU is the client's, the role's own process is only the
    harness's bridge to it)."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = times.user + times.system if own else 0.0
        if children:
            total += getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)  # waited for
            for child in process.children(recursive=True):  # still running
                try:
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue  # it just ended
        return total
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def cpu_clock() -> list[tuple[float, float]]:
    """Per CPU (in CPU number order): (busy seconds, all seconds) so far, for every process on
    the machine; busy is everything but idle and I/O wait (a VM's steal time counts as busy:
    the CPU was not ours)."""
    out = []
    for t in psutil.cpu_times(percpu=True):
        idle = t.idle + getattr(t, "iowait", 0.0)
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)  # already in user, nice
        out.append((total - idle, total))
    return out


def busy_shares(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> dict[str, float | None]:
    """Per CPU number (a string, as JSON keys are), the share of the time between two
    :func:`cpu_clock` readings that any process kept it busy."""
    shares: dict[str, float | None] = {}
    for cpu, ((b0, t0), (b1, t1)) in enumerate(zip(before, after, strict=False)):
        shares[str(cpu)] = round(min(max((b1 - b0) / (t1 - t0), 0.0), 1.0), 3) if t1 > t0 else None
    return shares


class CpuMeter:
    """CPU used by a set of processes between ``begin()`` and ``end()``, and how busy each CPU
    of the machine was meanwhile (``busy``: other work on a shared machine shows there)."""

    def __init__(self, pids: dict[str, list[int | None]], children_only: tuple[str, ...] = ()) -> None:
        self.pids = pids
        self.children_only = children_only  # groups counted by their processes' children alone
        self.start: dict[str, list[float | None]] = {}
        self.used: dict[str, float | None] = {}
        self.clock: list[tuple[float, float]] = []
        self.busy: dict[str, float | None] = {}

    def begin(self) -> None:
        self.start = {group: [self._read(group, p) for p in pids]
                      for group, pids in self.pids.items()}
        self.clock = cpu_clock()

    def end(self) -> dict[str, float | None]:
        if self.clock:
            self.busy = busy_shares(self.clock, cpu_clock())
        for group, pids in self.pids.items():
            total: float | None = 0.0
            for pid, before in zip(pids, self.start.get(group, []), strict=False):
                after = self._read(group, pid)
                if before is None or after is None:
                    total = None
                    break
                total += after - before  # type: ignore[operator]
            self.used[group] = round(total, 3) if total is not None else None
        return self.used

    def _read(self, group: str, pid: int | None) -> float | None:
        children = group in self.children_only
        return cpu_seconds(pid, children=children, own=not children)
