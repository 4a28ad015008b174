"""Brokers and clients on separate CPUs, so that a run can tell the broker's cost from the
clients' (``Scenario.pin_cpus``, ``brokerbench run --pin-cpus``; off by default).

The plan (:func:`plan`): of the CPUs this process may use, the first quarter (at least one)
go to the broker and the rest to the clients: on 2 CPUs the broker gets CPU 0 and the clients
CPU 1; on 8, two and six. Clients are every producer and consumer process and the harness's
own process (it reads the backlog and paces the producers). With one CPU, or a broker that
lives inside the harness's process, there is nothing to separate: pinning stays off and the
record says why.

Only processes brokerbench started are ever pinned. The broker is pinned only when a private
instance of this process owns its pid (:func:`brokers.instances.owner_of`); a shared broker's
affinity is never touched: the clients alone are pinned, and the record says the broker may
still run on their CPUs. ``brokerbench run --pin-cpus`` therefore starts private brokers
(:func:`benchmarks.commands.run`) where it would otherwise use shared ones.

Affinity on Linux belongs to each thread: every thread of a pinned process is set (threads it
starts later inherit it from their parent thread). What was pinned is undone at the end of the
run for the processes that outlive it (the harness's own, a private broker reused by the next
run); the role processes exit with the run. The runner pins once every role has said ready,
after the fork server that starts them exists, so that server (and the roles of a later,
unpinned run) never inherits a pinned set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from .cpu_idle import AwakeCpus

BROKER_SHARE = 0.25  # the broker's share of the CPUs when pinned (at least one CPU)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity: a container's cpuset counts), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: every CPU, unpinnable
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Plan:
    """Where a run's processes may run. ``broker`` / ``clients``: the CPUs each side is pinned
    to, None when that side is left on every CPU (``cores`` of them); ``why`` says which, in
    words, for the results file."""

    broker: tuple[int, ...] | None
    clients: tuple[int, ...] | None
    cores: int
    why: str

    @property
    def separate(self) -> bool:
        """Broker and clients are on disjoint CPUs: each side's utilisation can be told apart."""
        return self.broker is not None and self.clients is not None

    def record(self) -> dict[str, Any]:
        """What the results file's ``environment.cpu_pinning`` says."""
        return {"broker": list(self.broker) if self.broker is not None else None,
                "clients": list(self.clients) if self.clients is not None else None,
                "cores": self.cores, "why": self.why}


def plan(on: bool, *, broker_ours: bool, in_process: bool = False, cpus: Iterable[int] | None = None) -> Plan:
    """The CPUs for a run. ``on``: pinning asked for; ``broker_ours``: brokerbench started the
    broker (a private instance), so its CPUs may be set; ``in_process``: the broker runs inside
    the harness (nothing to separate); ``cpus``: those to share out (default: this process's)."""
    usable = sorted(cpus) if cpus is not None else usable_cpus()
    n = len(usable)
    if not on:
        return Plan(None, None, n, "off: broker and clients share every CPU (pin_cpus not set)")
    if in_process:
        return Plan(None, None, n, "off: the broker runs inside the harness's process, so there is nothing to "
                                   "separate")
    if n < 2:
        return Plan(None, None, n, f"off: {n} CPU, nothing to separate")
    share = max(1, int(n * BROKER_SHARE))
    broker, clients = tuple(usable[:share]), tuple(usable[share:])
    if not broker_ours:
        return Plan(None, clients, n, "clients only: the broker is shared (brokerbench did not start it), so its "
                                      "CPUs are left alone and it may also run on the clients' CPUs")
    return Plan(broker, clients, n, f"the broker on {_cpus(broker)}, every client process (producers, consumers, "
                                    f"the harness) on {_cpus(clients)}")


def _cpus(cpus: Iterable[int]) -> str:
    listed = list(cpus)
    return ("CPU " if len(listed) == 1 else "CPUs ") + ", ".join(map(str, listed))


def threads_of(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (just ``pid`` where /proc cannot tell)."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return [pid]


def set_process(pid: int, cpus: Iterable[int]) -> None:
    """Pin every thread of ``pid`` to ``cpus``. Threads started while it runs are caught by a
    second pass (up to three); a thread that ends meanwhile, or that the kernel will not move
    (its cgroup does not allow those CPUs, say), is skipped: :func:`affinity` tells the truth."""
    wanted, done = set(cpus), set()
    for _ in range(3):
        todo = [t for t in threads_of(pid) if t not in done]
        if not todo:
            return
        for tid in todo:
            try:
                os.sched_setaffinity(tid, wanted)
            except OSError:  # gone, or not movable there
                pass
            done.add(tid)


def affinity(pid: int) -> list[int] | None:
    """The CPUs ``pid`` may run on, as the kernel says; None if it is gone or cannot be read."""
    try:
        return sorted(os.sched_getaffinity(pid))
    except OSError:
        return None


@dataclass
class Pinned:
    """Pinning applied to one run: :meth:`undo` gives the processes that outlive the run their
    affinity back; ``checked`` is what the kernel reported for each side after setting it."""

    plan: Plan
    broker_pid: int | None = None
    awake: AwakeCpus = field(default_factory=AwakeCpus)  # the CPUs held out of idle states, or why not
    restore: dict[int, list[int]] = field(default_factory=dict)  # pid -> its affinity before
    checked: dict[str, list[int] | None] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The plan, what the kernel reported after it was applied (``checked``), and the
        broker's pid when it was pinned; ``why`` says so when the two differ."""
        out = self.plan.record()
        out["idle"] = self.awake.record()
        if self.checked:
            out["checked"] = dict(self.checked)
            for side, wanted in (("broker", self.plan.broker), ("clients", self.plan.clients)):
                got = self.checked.get(side)
                if wanted is not None and side in self.checked and got != list(wanted):
                    out["why"] += f"; but the kernel reports the {side} on {got}"
        if self.plan.broker is not None:
            out["broker_pid"] = self.broker_pid
        return out

    def undo(self) -> None:
        self.awake.release()
        for pid, cpus in self.restore.items():
            try:
                set_process(pid, cpus)
            except OSError:  # gone, or no longer ours to set: nothing to give back
                pass
        self.restore.clear()


def apply(on: bool, *, broker_pid: int | None, client_pids: list[int], in_process: bool = False,
          keep: Iterable[int] = (), awake: bool = False) -> Pinned:
    """Pin a run's processes by :func:`plan`: the broker (only if a private instance of ours owns
    ``broker_pid``) and ``client_pids``. ``keep``: pids whose affinity :meth:`Pinned.undo` must
    give back (the harness's own process); the broker's is given back too. ``awake``: hold every
    CPU out of idle states until :meth:`Pinned.undo` (:mod:`.cpu_idle`)."""
    from brokers.instances import owner_of

    ours = on and broker_pid is not None and owner_of(broker_pid) is not None
    chosen = plan(on, broker_ours=ours, in_process=in_process)
    pinned = Pinned(chosen, broker_pid if ours else None)
    if awake:
        pinned.awake.hold()
    if chosen.clients is None:
        return pinned
    for pid in keep:
        before = affinity(pid)
        if before is not None:
            pinned.restore[pid] = before
    if chosen.broker is not None and broker_pid is not None:
        before = affinity(broker_pid)
        if before is not None:
            pinned.restore[broker_pid] = before
        set_process(broker_pid, chosen.broker)
        pinned.checked["broker"] = affinity(broker_pid)
    for pid in client_pids:
        set_process(pid, chosen.clients)
    pinned.checked["clients"] = sorted(set().union(*(affinity(p) or [] for p in client_pids))) \
        if client_pids else None
    return pinned
