"""Runs a scenario: starts producer and consumer processes, paces them, watches, collects.

Sequence of one run:
1. a fresh queue (``bb-<broker>-<random>``) on the broker, deleted at the end;
2. producers and consumers start (processes; threads for the memory broker), connect and say
   ready; the runner then gives them all one start time ``t0`` (a start barrier);
3. warm-up (not counted), then the measured window, during which the runner samples the
   backlog and the CPU of the broker and of every client process, and fires fault actions;
4. producers stop at the end of the window (drain mode: after pre-filling); consumers go on
   until everything accepted has run, or nothing is left in the broker (see :class:`Holdings`:
   what the broker holds out of stats()' sight counts too), or ``drain_timeout_s``; jobs the
   broker still holds then are recorded as ``held_at_end``;
5. every role sends its recorder; the runner merges them into figures.
A role that fails (broker gone, say) stops the run: the result says why, with partial figures.
Every wait is bounded, so a run always ends by itself.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from brokers import clients, registry
from brokers.contract import Broker
from brokers.provision import find

from ..results import cpu_cost, files
from . import environment, pinning
from .metrics import Recorder, SequenceCounts, read_seen, read_seen_log
from .resources import CpuMeter, broker_pid
from .roles import Control, Credit, RoleSpec, SharedFlag, role_main
from .scenario import Scenario
from .supervision import Action, ClientQueueAdmin, Events, Inbox, RoleMessages, RunContext, Sampler, drain_messages

Progress = Callable[[dict[str, Any]], None]
TICK_S = 0.25
QUIET_S = 2.0  # nothing left in the broker and no progress for this long: the run is over
HELD_EVERY_S = (1.0, 4.0)  # the broker's complete (slow) count: read at most every 1 s, every 4 s
#                           while it keeps finding jobs held (each read may start a process)


class Holdings:
    """What the broker still holds, by the most complete count its adapter gives, for the end
    of a run (never for the 50 ms closed-loop reading: the sampler reads ``stats()``).

    An adapter whose ``stats()`` cannot see everything it holds offers ``held()``: how many
    jobs it still holds that may yet run, or None when it cannot tell (the AMQP adapter counts
    them on the node, one rabbitmqctl call: ready, unacked, delayed and held for at-least-once
    dead-lettering, which AMQP's counts miss). For an adapter without ``held()``, ``stats()``
    is complete and the sampler's backlog is the answer."""

    def __init__(self, admin: Any) -> None:
        self._held: Callable[[], int | None] | None = getattr(admin, "held", None)
        self._read_at = float("-inf")
        self._every = HELD_EVERY_S[0]
        self._last: int | None = None

    def count(self, backlog: int | None, *, fresh: bool = False) -> int | None:
        """Jobs held now (``backlog``: the sampler's latest reading of ``stats()``). A slow
        reading is reused for up to HELD_EVERY_S unless ``fresh``. None: the broker cannot tell."""
        if self._held is None:
            return backlog
        if fresh or time.monotonic() - self._read_at >= self._every:
            try:
                self._last = self._held()
            except Exception:  # noqa: BLE001 - a broker that cannot answer cannot tell
                self._last = None
            self._read_at = time.monotonic()
            self._every = min(self._every * 2, HELD_EVERY_S[1]) if self._last else HELD_EVERY_S[0]
        return self._last


class ThreadValue:
    """Stands in for ``multiprocessing.Value`` when the roles are threads of this process."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


@dataclass
class RunOutcome:
    """What one run (or one sweep step) gave: figures, histograms, errors, and the broker as
    described by its adapter; for fault runs the timeline of events and the broker's final
    counts."""

    figures: dict[str, Any] | None
    histograms: dict[str, Any] | None
    errors: list[str]
    described: dict[str, Any]
    drain: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    final_stats: dict[str, Any] | None = None
    redelivered_at_s: list[float] | None = None
    cpu_pinning: dict[str, Any] | None = None  # where broker and clients ran (pinning.Pinned.record)
    client: dict[str, Any] | None = None       # what a contender's roles said they are (name, versions)


def _role_context() -> Any:
    """Role processes come from a fork server that has already imported the roles and the
    adapters: each starts in tens of milliseconds instead of a fresh interpreter's second,
    and none inherits the runner's threads or connections (as a plain fork would)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["benchmarks.harness.roles", *role_preload()])
    return ctx


def role_preload() -> tuple[str, ...]:
    """Modules a role process imports before it is forked: each registered kind's adapter (so
    a run's roles start without importing them), read from the registry."""
    return tuple(dict.fromkeys(d.adapter_path.partition(":")[0] for d in registry.drivers()
                               if d.adapter_path and not d.in_process))


def resolve_url(scenario: Scenario, url: str | None) -> str:
    return url or find(scenario.broker).url


def run_once(scenario: Scenario, url: str, progress: Progress | None = None,
             actions: Sequence[Action] = ()) -> RunOutcome:
    """One run. ``actions`` inject faults. Consumers log every settling run to a file of their
    own as it happens, so jobs finished by a consumer that is then SIGKILLed still count, and
    the end of the run is decided on distinct jobs settled, not on runs (duplicates)."""
    if not scenario.broker:
        raise ValueError("the scenario names no broker: bind it with scenario.on(kind)")
    queue = f"bb-{scenario.broker}-{uuid.uuid4().hex[:8]}"
    # The runner's own connection only reads stats and cleans up: it fails fast.
    admin = registry.get(scenario.broker).open(url, queue=queue,
                                               **{**scenario.broker_options, "reconnect_for_s": 1.0})
    described = admin.describe()
    view = clients.get(scenario.client).queue_admin if scenario.client else None
    if view is not None:   # a client with keys of its own counts and removes its queue itself
        admin = ClientQueueAdmin(admin, view(url, queue))
    logs = tempfile.mkdtemp(prefix="bb-seen-")
    specs = [RoleSpec("producer", i, scenario.to_dict(), url, queue) for i in range(scenario.producers)]
    specs += [RoleSpec("consumer", i, scenario.to_dict(), url, queue,
                       os.path.join(logs, f"consumer-{i}.seen") if logs else None) for i in range(scenario.consumers)]
    if scenario.threads:
        shared: queue_module.SimpleQueue[Any] = queue_module.SimpleQueue()
        control = Control(shared, threading.Event(), threading.Event(), ThreadValue(), threading.Event(),
                          Credit(ThreadValue(scenario.max_backlog)))
        inbox = Inbox(shared=shared)
        runners: list[Any] = [threading.Thread(target=role_main, args=(s, control, admin), daemon=True)
                              for s in specs]
    else:
        ctx = _role_context()
        control = Control(None, SharedFlag(ctx), SharedFlag(ctx), ctx.Value("q", 0), SharedFlag(ctx),
                          Credit(ctx.Value("q", scenario.max_backlog)))
        pipes = [ctx.Pipe(duplex=False) for _ in specs]  # (reader, writer): one per role
        inbox = Inbox(readers=[reader for reader, _ in pipes])
        runners = [ctx.Process(target=role_main, args=(s, control.for_role(writer)), daemon=True)
                   for s, (_, writer) in zip(specs, pipes, strict=True)]
    for r in runners:
        r.start()
    if not scenario.threads:
        for _, writer in pipes:
            writer.close()  # the roles hold their write ends: a dead role's pipe then reads EOF
    messages = RoleMessages(scenario, {"producer": scenario.producers, "consumer": scenario.consumers},
                            seen_logs=[s.seen_log for s in specs if s.seen_log])
    live = LiveRun(scenario, url, admin, control, inbox, runners, specs, messages, described, progress,
                   list(actions))
    try:
        return live.supervise()
    finally:
        control.stop.set()
        control.consume.set()
        for r in runners:
            r.join(timeout=10)
        for r in runners:
            if r.is_alive() and hasattr(r, "terminate"):
                r.terminate()
                messages.errors.append("a role did not stop within 10 s and was terminated")
        try:
            admin.remove()
        except Exception:  # noqa: BLE001 - the broker may be the thing that died
            pass
        admin.close()
        if logs:
            shutil.rmtree(logs, ignore_errors=True)


@dataclass
class LiveRun:
    """One run while it goes: its scenario, its roles and what they said, the runner's own
    (admin) adapter, and the fault actions to fire."""

    scenario: Scenario
    url: str
    admin: Broker
    control: Control
    inbox: Inbox
    runners: list[Any]
    specs: list[RoleSpec]
    messages: RoleMessages
    described: dict[str, Any]
    progress: Progress | None
    actions: list[Action]
    events: Events = field(default_factory=Events)

    def supervise(self) -> RunOutcome:
        """Wait for every role to be ready, give the start signal, and watch the run."""
        scenario, messages = self.scenario, self.messages
        everyone = scenario.producers + scenario.consumers
        deadline = time.monotonic() + 120
        while len(messages.ready) < everyone and time.monotonic() < deadline and not messages.errors:
            drain_messages(self.inbox, messages, TICK_S)
            if not all(r.is_alive() for r in self.runners) and len(messages.ready) < everyone \
                    and not messages.reports:
                messages.errors.append("a role exited before it was ready")
                break
        if len(messages.ready) < everyone:
            return RunOutcome(None, None, messages.errors or ["roles were not ready within 120 s"], self.described)

        threads = scenario.threads
        client_pids = [os.getpid()] if threads else [r.pid for r in self.runners]
        server = None if threads else broker_pid(scenario.broker, self.url)
        groups = {"broker": [] if threads else [server],
                  "producers": client_pids if threads else client_pids[:scenario.producers],
                  "consumers": [] if threads else client_pids[scenario.producers:]}
        if not threads:
            groups["harness"] = [os.getpid()]
        if scenario.external:
            # A contender's role process is the harness's bridge to its program (a child): the
            # program alone is the client (producers, consumers); the bridges are counted apart.
            groups["bridge"] = list(client_pids)
        meter = CpuMeter(groups, children_only=("producers", "consumers") if scenario.external else ())
        # Pinned before the start signal: every role has connected, so its threads exist.
        pinned = pinning.apply(scenario.pin_cpus, broker_pid=server, in_process=threads,
                               client_pids=[] if threads else [*client_pids, os.getpid()], keep=[os.getpid()],
                               awake=scenario.awake_cpus)
        try:
            outcome = self._start(meter, scenario)
        finally:
            pinned.undo()
        outcome.cpu_pinning = pinned.record()
        if outcome.figures is not None:
            outcome.figures["cpu_busy"] = meter.busy
            outcome.figures.update(cpu_cost.derive(outcome.figures, outcome.cpu_pinning, pinned.plan.cores))
        return outcome

    def _start(self, meter: CpuMeter, scenario: Scenario) -> RunOutcome:
        """Give the start time, sample the backlog in the background, and watch the run."""
        t0 = time.monotonic_ns() + 200_000_000
        self.control.t0.value = t0
        self.control.start.set()
        sampler = Sampler(scenario, self.admin, self.control, t0)
        sampler.start()
        context = RunContext(scenario, self.url, self.admin,
                             {(s.role, s.index): r for s, r in zip(self.specs, self.runners, strict=True)},
                             self.messages, t0)
        try:
            return self._watch(meter, sampler, context)
        finally:
            sampler.halt.set()
            sampler.join(timeout=15)

    def _watch(self, meter: CpuMeter, sampler: Sampler, context: RunContext) -> RunOutcome:
        """Fire actions, measure CPU in the window, report progress, and decide when it ends."""
        scenario, control, watch, actions, t0 = self.scenario, self.control, self.messages, self.actions, context.t0
        drain = scenario.mode == "drain"
        last_ran, last_change = -1, time.monotonic()
        finish_by: float | None = None
        holdings, held_at_end = Holdings(self.admin), 0
        drain_started_ns = drain_ended_ns = 0
        window_start = t0 + int(scenario.warmup_s * 1e9)
        window_end = window_start + int(scenario.duration_s * 1e9)
        if drain:
            window_start = window_end = 2**62  # set when filling is over
        cpu_begun = cpu_ended = False
        hard_end = time.monotonic() + scenario.warmup_s + scenario.duration_s + scenario.drain_timeout_s + 60 \
            + max((a.at_s for a in actions), default=0)
        while True:
            drain_messages(self.inbox, watch, TICK_S)
            now_ns, now = time.monotonic_ns(), time.monotonic()
            if watch.errors:
                break
            for action in actions:
                if not action.done and (now_ns - t0) / 1e9 >= action.at_s:
                    self.events.fire(action, context)
            if drain and not drain_started_ns and watch.finished("producer"):
                drain_started_ns = window_start = time.monotonic_ns()
                control.consume.set()
            if not cpu_begun and now_ns >= window_start:
                meter.begin()
                cpu_begun = True
            if cpu_begun and not cpu_ended and not drain and now_ns >= window_end:
                meter.end()
                cpu_ended = True
            ran = watch.total("consumer")
            if ran != last_ran:
                last_ran, last_change = ran, now
            if self.progress is not None:
                self.progress({"elapsed_s": (now_ns - t0) / 1e9, "sent": watch.total("producer"), "ran": ran,
                               "backlog": sampler.latest,
                               "phase": _phase(scenario, now_ns, window_start, window_end, drain_started_ns)})
            pending_actions = any(not a.done for a in actions) or any(t.is_alive() for t in self.events.threads)
            if watch.finished("producer") and (drain_started_ns or not drain) and not pending_actions:
                if finish_by is None:
                    finish_by = now + scenario.drain_timeout_s
                backlog = sampler.latest
                accepted = watch.accepted()
                # The runs counted may include duplicates: check distinct jobs before ending.
                everything_ran = ran >= accepted and distinct_settled(watch.seen_logs) >= accepted
                settled = everything_ran and backlog == 0
                quiet = backlog == 0 and now - last_change >= QUIET_S
                timed_out = now >= finish_by
                # Quiet is not the end while the broker still holds jobs stats() does not show
                # (RabbitMQ: unacked, or held by a delay level for a full lane): wait for them.
                if quiet and not settled and not timed_out and holdings.count(backlog):
                    quiet = False
                if settled or quiet or timed_out:
                    if not settled:
                        held_at_end = holdings.count(backlog, fresh=timed_out)
                    if timed_out and not settled:
                        still = ("" if not held_at_end else
                                 f"; the broker still held {held_at_end} job(s) (held_at_end: ready, unacked, "
                                 "delayed or held for dead-lettering), counted in lost though they may yet run")
                        watch.errors.append(f"consumers did not finish within drain_timeout_s="
                                            f"{scenario.drain_timeout_s}; the rest is reported as lost or unfinished"
                                            + still)
                    if drain:
                        drain_ended_ns = time.monotonic_ns()
                    break
            if now >= hard_end:
                watch.errors.append("the run did not end in time and was stopped")
                break
        if drain and drain_started_ns and not drain_ended_ns:
            drain_ended_ns = time.monotonic_ns()
        used = meter.end() if cpu_begun and not cpu_ended else meter.used
        sampler.halt.set()
        sampler.join(timeout=15)  # the admin connection is not thread-safe (pika): one user at a time
        final_stats = _stats(self.admin)
        control.stop.set()
        control.consume.set()
        self.events.join(timeout=30)
        deadline = time.monotonic() + 30
        while watch.missing() > 0 and time.monotonic() < deadline:
            drain_messages(self.inbox, watch, TICK_S, until=lambda: watch.missing() == 0)
            if not any(r.is_alive() for r in self.runners):
                drain_messages(self.inbox, watch, 0.5)
                break
        if watch.missing() > 0:
            watch.errors.append(f"{watch.missing()} role(s) sent no results (they died or hung)")
        outcome = _assemble(scenario, watch, list(sampler.samples), used, self.described, t0,
                            drain_started_ns, drain_ended_ns)
        outcome.events = sorted(self.events.items, key=lambda e: e["t_s"])
        outcome.final_stats = final_stats
        if outcome.figures is not None:
            # Jobs the broker still held when the run ended without every accepted job run (0
            # when all ran; None: it could not tell). They are in "lost", and may yet run.
            outcome.figures["held_at_end"] = held_at_end
        return outcome


def _stats(admin: Any) -> dict[str, Any] | None:
    try:
        return admin.stats().as_dict()
    except Exception:  # noqa: BLE001 - unknown after a broker failure
        return None


def _phase(scenario: Scenario, now_ns: int, window_start: int, window_end: int, drain_started: int) -> str:
    if scenario.mode == "drain":
        return "draining" if drain_started else "filling"
    if now_ns < window_start:
        return "warm-up"
    return "measuring" if now_ns < window_end else "finishing"


def distinct_settled(seen_logs: list[str]) -> int:
    """How many distinct jobs the consumers' logs say were settled (each (producer, sequence)
    once, however often it ran)."""
    counts = SequenceCounts()
    for path in seen_logs:
        if os.path.exists(path):
            counts.merge(read_seen_log(path))
    return sum(1 for arr in counts.counts.values() for n in arr if n)


def _merge(watch: RoleMessages, t0: int) -> tuple[Recorder, dict[str, int], int]:
    """The roles' recorders merged, the workers' counts, and when the last logged run ended
    (monotonic ns, 0 without logs)."""
    merged = Recorder()
    worker: dict[str, int] = {}
    for report in watch.reports.values():
        merged.merge_json(report["recorder"])
        for k, v in (report.get("extra") or {}).items():
            if isinstance(v, int):  # counts; "client" (what a contender said it is) is read elsewhere
                worker[k] = worker.get(k, 0) + v
    last_end = 0
    if watch.seen_logs:  # count runs from the logs: they include consumers that were killed
        merged.seen = SequenceCounts()
        for path in watch.seen_logs:
            if os.path.exists(path):
                log = read_seen(path, t0)
                merged.seen.merge(log.counts)
                last_end = max(last_end, log.last_end_ns)
                index = int(Path(path).stem.rpartition("-")[2])
                if ("consumer", index) not in watch.reports:  # killed: its finished runs, from its log
                    for second, n in log.done_per_s.items():
                        merged.done_per_s[second] = merged.done_per_s.get(second, 0) + n
    return merged, worker, last_end


def _assemble(scenario: Scenario, watch: RoleMessages, samples: list[tuple[float, int | None]],
              cpu: dict[str, float | None], described: dict[str, Any], t0: int, drain_start: int,
              drain_end: int) -> RunOutcome:
    merged, worker, last_end = _merge(watch, t0)
    cpu = {**cpu, "broker": 0.0 if scenario.threads else cpu.get("broker")}
    drain = None
    if scenario.mode == "drain":
        # The end is when the last run ended, by the consumers' own logs (the runner notices it
        # only at its next look at the broker, up to a sampling interval later), else when noticed.
        if drain_start and drain_start < last_end <= drain_end:
            drain_end = last_end
        window_s = max((drain_end - drain_start) / 1e9, 1e-9) if drain_start else 0.0
        done = merged.counters.get("ran", 0)
        fill_s = max((drain_start - t0) / 1e9, 1e-9) if drain_start else 0.0
        accepted = merged.counters.get("accepted", 0)
        drain = {"jobs": done, "seconds": round(window_s, 3),
                 "jobs_per_s": round(done / window_s, 1) if window_s else 0.0,
                 "fill_seconds": round(fill_s, 3), "fill_jobs_per_s": round(accepted / fill_s, 1) if fill_s else 0.0}
    else:
        window_s = scenario.duration_s
    seconds = sorted(set(merged.sent_per_s) | set(merged.accepted_per_s) | set(merged.done_per_s))
    span = range(0, (seconds[-1] + 1) if seconds else 0)
    timeline = {"t_s": [float(s) for s in span], "sent_per_s": [merged.sent_per_s.get(s, 0) for s in span],
                "accepted_per_s": [merged.accepted_per_s.get(s, 0) for s in span],
                "done_per_s": [merged.done_per_s.get(s, 0) for s in span],
                "backlog_t_s": [round(t, 2) for t, _ in samples], "backlog": [b for _, b in samples]}
    if merged.accepted_per_tenth:
        tenths = range(0, max(merged.accepted_per_tenth) + 1)
        timeline["accepted_per_100ms"] = [merged.accepted_per_tenth.get(t, 0) for t in tenths]
    figures = files.figures(merged, window_s=window_s, cpu=cpu, timeline=timeline, worker_counts=worker)
    said = [extra["client"] for r in watch.reports.values()
            if isinstance((extra := r.get("extra") or {}).get("client"), dict)]
    return RunOutcome(figures, files.histograms(merged), watch.errors, described, drain,
                      redelivered_at_s=sorted(round((t - t0) / 1e9, 3) for t in merged.redelivered_at),
                      client=said[0] if said else None)


def _sustainable(scenario: Scenario, once: RunOutcome) -> str | None:
    """None if the step was sustainable, else why not."""
    if once.errors or once.figures is None:
        return "errors: " + "; ".join(once.errors)
    f = once.figures
    if f["throughput"]["out_per_s"] < 0.95 * scenario.rate:
        return f"finished {f['throughput']['out_per_s']:.0f}/s of {scenario.rate:.0f}/s offered"
    p99 = f["latency_ms"]["end_to_end_intended"].get("p99")
    if p99 is not None and p99 > scenario.p99_limit_ms:
        return f"p99 {p99:.0f} ms above the {scenario.p99_limit_ms:.0f} ms limit"
    return None


def _environment(scenario: Scenario, described: dict[str, Any], cpu_pinning: dict[str, Any] | None,
                 client: dict[str, Any] | None = None) -> dict[str, Any]:
    """The environment of a run, with where its broker and clients ran, and which client ran."""
    found = environment.capture({scenario.broker: described})
    found["client"] = environment.client_record(scenario.client or scenario.broker, client)
    if cpu_pinning is None:  # the roles never started: nothing was pinned
        cpu_pinning = pinning.plan(False, broker_ours=False).record()
        if scenario.pin_cpus:
            cpu_pinning["why"] = "not applied: the run stopped before its processes started"
    found["cpu_pinning"] = cpu_pinning
    return found


def run(scenario: Scenario, *, url: str | None = None, out: Path | None = None, progress: Progress | None = None,
        actions: Sequence[Action] = (), extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], Path | None]:
    """Run a scenario, write its results file under ``out`` (if given); return (result, path)."""
    started = datetime.now().astimezone()
    url = resolve_url(scenario, url)
    if scenario.mode == "sweep":
        result = _run_sweep(scenario, url, progress, started, extra)
    else:
        once = run_once(scenario, url, progress, actions)
        hard_errors = [e for e in once.errors if "drain_timeout_s" not in e]
        more: dict[str, Any] = {"events": once.events or [], "final_stats": once.final_stats,
                                "redelivered_at_s": once.redelivered_at_s or [], **(extra or {})}
        if once.drain:
            more["drain"] = once.drain
        result = files.build(scenario.to_dict(), status="failed" if hard_errors else "ok", errors=once.errors,
                             environment=_environment(scenario, once.described, once.cpu_pinning, once.client),
                             measured=once.figures, hist=once.histograms, started=started, extra=more)
    path = files.write(result, out) if out is not None else None
    return result, path


def _run_sweep(scenario: Scenario, url: str, progress: Progress | None, started: datetime,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    steps, best, errors = [], None, []
    described: dict[str, Any] = {}
    cpu_pinning: dict[str, Any] | None = None
    client: dict[str, Any] | None = None
    rates = list(scenario.sweep_rates) or [scenario.rate * scenario.sweep_factor ** i
                                           for i in range(scenario.sweep_max_steps)]
    for rate in rates[:scenario.sweep_max_steps]:
        step_scenario = scenario.with_(mode="open", rate=round(rate, 3))
        once = run_once(step_scenario, url, progress)
        described, cpu_pinning, client = once.described, once.cpu_pinning or cpu_pinning, once.client or client
        why = _sustainable(step_scenario, once)
        if once.figures is None:
            errors += once.errors
            break
        steps.append({"offered_rate": round(rate, 3), "sustainable": why is None, "why_not": why,
                      "figures": once.figures, "histograms": once.histograms})
        if why is not None:
            break
        best = round(rate, 3)
    last = steps[-1] if steps else None
    return files.build(scenario.to_dict(), status="failed" if errors else "ok", errors=errors,
                       environment=_environment(scenario, described, cpu_pinning, client),
                       measured=last["figures"] if last else None, hist=last["histograms"] if last else None,
                       started=started, steps=steps, extra={"max_sustainable_rate": best, **(extra or {})})
