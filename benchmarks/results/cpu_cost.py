"""What each job costs in CPU, broker apart from clients, and which side bound the run.

From a run's CPU seconds (``figures.cpu_s``, measured over the window), the jobs finished in
that window and the CPUs each side could use (``environment.cpu_pinning``), this module gives
the figures a results file records beside them and the views print:

* ``cpu_per_1000_jobs``: CPU seconds per 1,000 jobs finished in the window, for the broker, the
  clients (producers + consumers: what an application runs) and each role (producers,
  consumers, and the harness's own processes where they were measured: ``harness``, and a
  contender's ``bridge``); None when unknown;
* ``jobs_per_broker_cpu_s``: jobs finished per CPU second of the broker process;
* ``utilisation``: each side's CPU seconds over (window x the CPUs it could use): its pinned
  set, else every CPU (``utilisation.cpus`` says which). The clients' side counts every process
  brokerbench runs there (producers, consumers, harness, bridges);
* ``bound_by``: which side's CPUs were full (:func:`bound_by`, one threshold: :data:`BOUND_AT`),
  reading too how busy each CPU was with any process (``figures.cpu_busy``): on a shared
  machine other work can starve a side whose own share looks low.

``bound_by`` reads CPUs only. "neither" means no side's CPUs were full; such a run may still be
bound by one thread (Redis runs commands on one), one Python process (its GIL), the disk, or the
closed loop's backlog bound. Unpinned, broker and clients share every CPU: when together they
fill them, the run says "shared CPUs" with each side's share, since which side would gain from
another CPU cannot be told from these numbers.

Results files written before these fields existed are read by deriving the same figures from
``cpu_s``, ``window_s`` and the throughput (jobs = ``out_per_s`` x ``window_s``), with every
CPU of the machine as each side's; what cannot be derived stays None ("-").
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

BOUND_AT = 0.85   # a side using this share of the CPUs it may use, or more, bounds the run
NOT_ROLES = ("broker", "clients")
HARNESS_CPU = ("harness", "bridge")  # CPU of brokerbench's own processes (on the clients' CPUs): no client's


@dataclass(frozen=True)
class Cost:
    """One run's CPU per job and what bound it (as recorded, or derived for an older file)."""

    jobs: int | None
    per_1000: dict[str, float | None]
    jobs_per_broker_cpu_s: float | None
    utilisation: dict[str, Any]
    bound_by: str

    @property
    def category(self) -> str:
        """``bound_by`` without its note: broker, clients, broker and clients, shared CPUs, other
        work, neither, or unknown."""
        return self.bound_by.split(" (")[0]


def jobs_in_window(figures: dict[str, Any]) -> int | None:
    """Jobs finished in the measured window: recorded, or out_per_s x window_s for older files."""
    if figures.get("jobs_in_window") is not None:
        return int(figures["jobs_in_window"])
    rate, window = (figures.get("throughput") or {}).get("out_per_s"), figures.get("window_s")
    if rate is None or not window:
        return None
    return round(rate * window)


def _per_1000(cpu: float | None, jobs: int | None) -> float | None:
    if cpu is None or not jobs:
        return None
    return round(cpu / jobs * 1000, 4)


def _share(cpu: float | None, window_s: float, cores: int | None) -> float | None:
    if cpu is None or not window_s or not cores:
        return None
    return round(cpu / (window_s * cores), 3)


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}".replace("%", " %")


def _busy_note(side: str, own: float | None, busy: float | None) -> tuple[str, str] | None:
    """When a side's CPUs were full (``busy`` >= BOUND_AT) though its own work alone did not
    fill them: ("own" if its work was at least half of it, else "others"), and a note."""
    if own is None or own >= BOUND_AT or busy is None or busy < BOUND_AT:
        return None
    whose = "the broker's" if side == "broker" else "the clients'"
    return ("own" if own >= busy / 2 else "others"), f"{whose} CPUs {_pct(busy)} busy, {_pct(own)} by the {side}"


def bound_by(broker: float | None, clients: float | None, *, separate: bool, together: float | None,
             busy: dict[str, float | None] | None = None) -> str:
    """Which side bounds a run, from each side's utilisation (share of the CPUs it may use):

    * "broker", "clients", "broker and clients": that side's own work kept its CPUs at least
      :data:`BOUND_AT` busy; with disjoint pinned sets (``separate``), also a side whose CPUs
      were that busy (``busy``: the share of each side's CPUs any process used, keys broker,
      clients, all) with its own work at least half of it, with a note saying so;
    * "shared CPUs (clients X %, broker Y %)": not pinned apart, and together (``together``:
      their combined share of every CPU) they fill the CPUs while neither alone does: which
      side would gain from another CPU cannot be told;
    * "other work (...)": the CPUs were full, mostly with other processes' work (the machine is
      shared): no side of the run can be named;
    * "neither": no CPUs were full; "unknown": a side's CPU was not measured."""
    busy = busy or {}
    full_broker = broker is not None and broker >= BOUND_AT
    full_clients = clients is not None and clients >= BOUND_AT
    if full_broker or full_clients:
        return "broker and clients" if full_broker and full_clients else "broker" if full_broker else "clients"
    if broker is None or clients is None:
        return "unknown (the broker's CPU was not measured)" if broker is None else "unknown"
    if separate:
        found = {side: got for side, own in (("broker", broker), ("clients", clients))
                 if (got := _busy_note(side, own, busy.get(side))) is not None}
        bound = [side for side, (whose, _) in found.items() if whose == "own"]
        notes = "; ".join(note for _, note in found.values())
        if bound:
            return " and ".join(bound) + f" ({notes})"
        return f"other work ({notes})" if found else "neither"
    if together is not None and together >= BOUND_AT:
        return f"shared CPUs (clients {_pct(clients)}, broker {_pct(broker)})"
    everything = busy.get("all")
    if everything is not None and everything >= BOUND_AT:
        shares = f"CPUs {_pct(everything)} busy: clients {_pct(clients)}, broker {_pct(broker)}"
        mostly_ours = together is not None and together >= everything / 2
        return f"shared CPUs ({shares})" if mostly_ours else f"other work ({shares})"
    return "neither"


def _busy(shares: dict[str, float | None] | None, cpus: list[int] | None) -> float | None:
    """The mean busy share of ``cpus`` (None: every CPU) from a run's ``cpu_busy``."""
    if not shares:
        return None
    picked = [shares.get(str(c)) for c in cpus] if cpus else list(shares.values())
    if not picked or None in picked:
        return None
    return round(sum(picked) / len(picked), 3)  # type: ignore[arg-type]


def derive(figures: dict[str, Any], pinning: dict[str, Any] | None, cores: int | None) -> dict[str, Any]:
    """The CPU cost figures of one run, for its results file. ``pinning``: the run's
    ``environment.cpu_pinning`` (None: unpinned); ``cores``: CPUs the run could use in all."""
    cpu = figures.get("cpu_s") or {}
    window = figures.get("window_s") or 0.0
    jobs = jobs_in_window(figures)
    cores = (pinning or {}).get("cores") or cores
    pinned_broker, pinned_clients = (pinning or {}).get("broker"), (pinning or {}).get("clients")
    broker_cpus = len(pinned_broker) if pinned_broker else cores
    client_cpus = len(pinned_clients) if pinned_clients else cores
    separate = bool(pinned_broker) and bool(pinned_clients)
    clients = cpu.get("clients")
    on_client_cpus = None if clients is None else clients + sum(cpu.get(k) or 0.0 for k in HARNESS_CPU)
    per_1000 = {"broker": _per_1000(cpu.get("broker"), jobs), "clients": _per_1000(clients, jobs)}
    per_1000.update({role: _per_1000(cpu.get(role), jobs) for role in cpu if role not in NOT_ROLES})
    broker_u, clients_u = _share(cpu.get("broker"), window, broker_cpus), _share(on_client_cpus, window, client_cpus)
    together = None if cpu.get("broker") is None or on_client_cpus is None \
        else _share(cpu["broker"] + on_client_cpus, window, cores)
    shares = figures.get("cpu_busy")
    busy = {"broker": _busy(shares, pinned_broker), "clients": _busy(shares, pinned_clients),
            "all": _busy(shares, None)}
    said = ("pinned sets" if separate else "clients pinned, the broker on every CPU" if pinned_clients
            else "every CPU, unpinned")
    broker_cpu = cpu.get("broker")
    return {
        "jobs_in_window": jobs,
        "cpu_per_1000_jobs": per_1000,
        "jobs_per_broker_cpu_s": round(jobs / broker_cpu, 1) if jobs is not None and broker_cpu else None,
        "utilisation": {"broker": broker_u, "clients": clients_u, "together": together,
                        "busy": {k: v for k, v in busy.items() if v is not None},
                        "broker_cpus": broker_cpus, "client_cpus": client_cpus, "cpus": said},
        "bound_by": bound_by(broker_u, clients_u, separate=separate, together=together, busy=busy),
    }


def _cores(result: dict[str, Any]) -> int | None:
    return ((result.get("environment") or {}).get("machine") or {}).get("cores")


def of(result: dict[str, Any], figures: dict[str, Any] | None = None) -> Cost | None:
    """The CPU cost of a run (``figures``: one of its sweep steps, default its own figures): as
    its file records it, or derived for a file written before it did. None without figures."""
    figures = figures if figures is not None else result.get("figures")
    if not figures:
        return None
    got = figures if "cpu_per_1000_jobs" in figures else \
        derive(figures, (result.get("environment") or {}).get("cpu_pinning"), _cores(result))
    return Cost(got.get("jobs_in_window"), dict(got["cpu_per_1000_jobs"]), got.get("jobs_per_broker_cpu_s"),
                dict(got["utilisation"]), got["bound_by"])


def jobs_per_broker_cpu_s(figures: dict[str, Any]) -> float | None:
    """Jobs per broker CPU second from the figures alone (recorded, else derived)."""
    if "jobs_per_broker_cpu_s" in figures:
        return figures["jobs_per_broker_cpu_s"]
    jobs, broker = jobs_in_window(figures), (figures.get("cpu_s") or {}).get("broker")
    return round(jobs / broker, 1) if jobs is not None and broker else None


def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def bound_summary(costs: list[Cost]) -> str:
    """What bound a cell's runs: one run's own answer (with its note); for several, one answer
    when they agree ("shared CPUs" with the median shares), else each answer with how many runs
    gave it ("clients 2 of 3, neither 1 of 3")."""
    if not costs:
        return "-"
    if len(costs) == 1:
        return costs[0].bound_by
    kinds = [c.category for c in costs]
    if len(set(kinds)) == 1:
        if kinds[0] == "shared CPUs":
            clients = _median([c.utilisation.get("clients") for c in costs])
            broker = _median([c.utilisation.get("broker") for c in costs])
            return f"shared CPUs (clients {_pct(clients)}, broker {_pct(broker)})"
        return costs[0].bound_by if kinds[0] == "unknown" else kinds[0]
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    return ", ".join(f"{k} {n} of {len(kinds)}" for k, n in counts.items())
