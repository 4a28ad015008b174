"""One broker in the live view: its instance, its load processes, its counters and the faults
the class can inject into it.

By default the broker is a private instance started for the session (killing it harms no one);
with ``shared`` it is the broker ``brokers.provision`` finds, and the actions that would stop or
reconfigure it are refused. Every action is a method here; the web layer maps a fixed list of
names onto them (:data:`benchmarks.live.lab.ACTIONS`), so nothing the page sends reaches a shell.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from brokers import registry
from brokers.contract import Backoff, BackoffType, JobOptions, JobSpec
from brokers.instances import private_instance
from brokers.provision import find

from ..contenders.bridge import kill_role
from ..harness.roles import MALFORMED
from . import load
from .broker_state import read_state, redis_missing
from .tally import Tally

BACKLOG_JOBS = 400          # low-priority jobs put in front of an urgent one
LOST_CHECK_S = 1.0          # Redis: every old unran job is looked up at most this often
DRAIN_S = 2.0               # after stopping the load, how long its last reports may take to be read
SPECIALS = ("poison", "malformed", "delayed", "urgent")


class Side:
    """One broker kind: ``start()``, then actions, then ``close()`` (idempotent)."""

    def __init__(self, kind: str, mark: Callable[[str, str], None], *, shared: bool = False,
                 client: str = "") -> None:
        self.kind, self.mark, self.shared = kind, mark, shared
        # A contender (brokers.clients) runs the load instead of our adapter: its producer and
        # workers are role processes behind benchmarks.contenders.bridge; our adapter still
        # declares the queue and reads the broker's counts.
        self.client = "" if client in ("", kind) else client
        self.queue = f"{load.QUEUE}-{uuid.uuid4().hex[:6]}"   # two labs on one shared broker never meet
        self.driver = registry.get(kind)
        self.profile = self.driver.at_level(registry.DEFAULT_DURABILITY)
        self.instance: Any = None
        self.url = ""
        self.settings = load.LoadSettings()
        self.running = False
        self.admin: Any = None
        self.special_producer: Any = None
        self.procs_lock = threading.RLock()    # the load's process list: actions and the sampler both touch it
        self.restarting: threading.Thread | None = None
        self.admin_lock = threading.RLock()   # one pika connection must never be used by two threads at once
        self.producer_proc: multiprocessing.Process | None = None
        self.consumers: list[multiprocessing.Process] = []
        self.pipes: list[Connection] = []
        self.pipes_lock = threading.Lock()
        self.pipe_of: dict[multiprocessing.Process, Connection] = {}
        self.lost_checked = 0.0
        self.watches: dict[str, tuple[str, float]] = {}   # job id -> (what, published at)
        self.killed_at: float | None = None
        self.broker_down = False
        self.state: dict[str, Any] = {}
        self.tally = Tally(on_run=self._on_run)
        self.ctx = multiprocessing.get_context("spawn")
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True, name=f"live-read-{kind}")

    @property
    def label(self) -> str:
        """The broker, and the client library when it is not our adapter."""
        if not self.client:
            return self.driver.label
        from brokers import clients

        return f"{self.driver.label} · {clients.get(self.client).label}"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "Side":
        try:
            if self.shared:
                self.url = find(self.kind).url
            else:
                self.instance = private_instance(self.kind, dict(self.profile.server))
                self.instance.start()
                self.url = self.instance.url
            self._open_admin()
            self.admin.purge()
        except BaseException:
            self.close()   # never leave a private broker behind
            raise
        self.reader.start()
        return self

    def _options(self) -> dict[str, Any]:
        return load.broker_options(self.kind, self.settings, dict(self.profile.options))

    def _open_admin(self, options: dict[str, Any] | None = None) -> None:
        with self.admin_lock:
            self._close_admin()
            self.admin = self.driver.open(self.url, queue=self.queue, **(options or self._options()))
            self.special_producer = self.admin.producer()
            self.special_producer.on_accepted = self.tally.accept   # accepted = replied or confirmed

    def _close_admin(self) -> None:
        with self.admin_lock:
            for thing in (self.special_producer, self.admin):
                try:
                    if thing is not None:
                        thing.close()
                except Exception:  # noqa: BLE001 - a dead broker's connection
                    pass
            self.special_producer = self.admin = None

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.stop_load()
            if self.restarting is not None:
                self.restarting.join(120)
            with self.admin_lock:
                try:
                    if self.shared and self.admin is not None:
                        self.admin.remove()     # leave the shared broker as we found it
                except Exception:  # noqa: BLE001 - closing what may already be gone
                    pass
                self._close_admin()
        finally:
            if self.instance is not None:
                self.instance.cleanup()
                self.instance = None
            if self.reader.is_alive():
                self.reader.join(2)

    def pids(self) -> list[int]:
        """Every process this side started (load processes and a private broker)."""
        with self.procs_lock:
            out = [p.pid for p in [self.producer_proc, *self.consumers] if p is not None and p.pid]
        if self.instance is not None and self.instance.pid:
            out.append(self.instance.pid)
        return out

    # ------------------------------------------------------------------ load
    def start_load(self, settings: load.LoadSettings) -> None:
        with self.procs_lock:
            self.stop_load()
            self.settings = settings
            self._open_admin()   # the Redis lock setting is an adapter option
            self.producer_proc = self._spawn(load.producer_main, settings.as_dict())
            self.consumers = [self._spawn(load.consumer_main, settings.concurrency)
                              for _ in range(settings.consumers)]
            self.running = True

    def _spawn(self, target: Callable[..., None], extra: Any) -> multiprocessing.Process:
        reader, writer = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=target, args=(writer, self.kind, self.url, self.queue, self._options(), extra),
                                kwargs={"client": self.client}, daemon=True)
        proc.start()
        writer.close()
        with self.pipes_lock:
            self.pipes.append(reader)
            self.pipe_of[proc] = reader
        return proc

    def stop_load(self) -> None:
        """Stop the producer (SIGTERM: it waits for its last confirms and reports every outcome)
        and the workers, then wait up to DRAIN_S for their last reports to be counted."""
        with self.procs_lock:
            procs = [p for p in [self.producer_proc, *self.consumers] if p is not None]
            self.producer_proc, self.consumers, self.running = None, [], False   # poll() no longer watches them
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self._drain(procs)

    def _drain(self, procs: list[multiprocessing.Process]) -> None:
        with self.pipes_lock:
            pipes = [self.pipe_of.pop(p) for p in procs if p in self.pipe_of]
        deadline = time.monotonic() + DRAIN_S
        while self.reader.is_alive() and time.monotonic() < deadline:
            with self.pipes_lock:
                if not any(conn in self.pipes for conn in pipes):
                    return
            time.sleep(0.02)

    def _read(self) -> None:
        while not self.closed.is_set():
            with self.pipes_lock:
                pipes = list(self.pipes)
            if not pipes:
                time.sleep(0.05)
                continue
            for conn in wait(pipes, timeout=0.2):
                try:
                    raw = conn.recv_bytes()
                except (EOFError, OSError):   # the process ended (or was killed mid-message)
                    with self.pipes_lock:
                        if conn in self.pipes:
                            self.pipes.remove(conn)
                    conn.close()
                    continue
                try:
                    self.tally.add(json.loads(raw))
                except Exception as exc:  # noqa: BLE001 - one bad report must not stop the counting
                    self.mark(self.kind, f"a report could not be read: {type(exc).__name__}")

    # ------------------------------------------------------------------ faults
    def kill_worker(self) -> str:
        with self.procs_lock:
            alive = [p for p in self.consumers if p.is_alive()]
            if not alive:
                raise ValueError("no worker is running: start the load first")
            victim = alive[0]
            self.killed_at = time.time()
            kill_role(victim.pid)   # a contender's program first: its last runs reach the tally
            self.consumers.remove(victim)
            victim.join(5)
            with self.pipes_lock:
                self.pipe_of.pop(victim, None)   # its pipe ends by itself (EOF)
            self.consumers.append(self._spawn(load.consumer_main, self.settings.concurrency))
        return f"kill -9 worker (pid {victim.pid}); a new worker started"

    def kill_broker(self) -> str:
        if self.shared or self.instance is None:
            raise PermissionError("the broker is shared (--shared): it is never killed")
        if self.broker_down or (self.restarting is not None and self.restarting.is_alive()):
            raise ValueError("the broker is restarting: wait for its 'broker back' marker")
        pid = self.instance.pid
        self.instance.kill()
        self.broker_down = True
        started = time.monotonic()

        def restart() -> None:
            time.sleep(self.driver.restart_pause_s)
            if self.closed.is_set():
                return
            try:
                self.instance.start()
                self._open_admin()   # the old admin connection died with the broker
                self.mark(self.kind, f"broker back after {time.monotonic() - started:.1f} s ({self.profile.name})")
            except Exception as exc:  # noqa: BLE001 - told to the page, not raised into a thread
                self.mark(self.kind, f"broker did not restart: {exc}")
            self.broker_down = False

        self.restarting = threading.Thread(target=restart, daemon=True, name=f"live-restart-{self.kind}")
        self.restarting.start()
        return f"kill -9 broker (pid {pid}), restarting with the same data ({self.profile.name})"

    def set_profile(self, name: str) -> str:
        with self.admin_lock:
            return self._set_profile(name)

    def _set_profile(self, name: str) -> str:
        if self.shared:
            raise PermissionError("the broker is shared (--shared): its settings are never changed")
        if self.broker_down:
            raise ValueError("the broker is restarting: wait for its 'broker back' marker")
        profile = self.driver.profile(name)
        options = load.broker_options(self.kind, self.settings, dict(profile.options))
        if "queue_type" in options:   # refuse what the adapter would refuse, before stopping anything
            from brokers.amqp.topology import Topology
            Topology(self.queue, {}, queue_type=options["queue_type"],
                     max_priority=options.get("max_priority") or 0)
        was_running = self.running
        self.stop_load()
        self._open_admin()   # a fresh connection: the last one may have died with a killed broker
        self.admin.remove()  # gone for good: the next profile may declare another queue type
        if dict(profile.server) != dict(self.profile.server):   # server settings: a new instance
            self._close_admin()
            self.instance.cleanup()
            self.instance = private_instance(self.kind, dict(profile.server))
            self.instance.start()
            self.url = self.instance.url
        self._open_admin(options)
        self.profile = profile
        self.tally.reset()
        if was_running:
            self.start_load(self.settings)
        return f"restarted empty as '{profile.name}' ({profile.promise})"

    def drop_connections(self) -> str:
        if self.shared:
            raise PermissionError("the broker is shared (--shared): other clients' connections are never dropped")
        if self.driver.drop_connections is None:
            raise ValueError(f"{self.driver.label} cannot drop connections here")
        n = self.driver.drop_connections(self.url, self.instance, spare_pid=os.getpid())
        return f"closed {n} client connections from the broker's side"

    def publish_special(self, what: str) -> str:
        with self.admin_lock:
            return self._publish_special(what)

    def _publish_special(self, what: str) -> str:
        """Publish one teaching job. Its id is chosen first and watched before it is sent, so the
        run that answers it (which can come back within a millisecond) is never missed."""
        if self.client:
            raise ValueError(f"special jobs go to our adapter's workers; this side runs {self.label}'s, which "
                             "take the seed's three job types only")
        now = time.time()
        job_id = f"{what}-{uuid.uuid4().hex[:10]}"
        if what == "poison":
            self.watches[job_id] = ("poison job", now)
            self.special_producer.publish(load.POISON, {"sent_at": now}, JobOptions(
                attempts=3, backoff=Backoff(BackoffType.FIXED, 1000), job_id=job_id))
            self.special_producer.flush()
            return f"poison job {job_id}: 3 attempts 1 s apart, then the dead-letter queue"
        if what == "malformed":
            if self.driver.inject_raw is None:
                raise ValueError(f"{self.driver.label} cannot take a raw message here")
            raw_id = self.driver.inject_raw(self.admin, "user_variables_update", MALFORMED)
            return f"malformed job {raw_id} (not JSON): failed at once into the dead-letter queue"
        if what == "delayed":
            self.watches[job_id] = ("delayed job (5 s)", now)
            self.special_producer.publish("user_variables_update", {"sent_at": now, "due_at": now + 5},
                                          JobOptions(delay_ms=5000, job_id=job_id))
            self.special_producer.flush()
            return f"delayed job {job_id}: due in 5 s"
        if what == "urgent":
            backlog = [JobSpec("heavy_workflow_execution", {"sent_at": now, "work_ms": 20.0},
                               JobOptions(priority=10)) for _ in range(BACKLOG_JOBS)]
            self.special_producer.publish_many(backlog)
            self.watches[job_id] = ("urgent job", time.time())
            self.special_producer.publish("user_variables_update", {"sent_at": time.time()},
                                          JobOptions(priority=1, job_id=job_id))
            self.special_producer.flush()
            return f"{BACKLOG_JOBS} low-priority jobs, then urgent job {job_id} (priority 1)"
        raise ValueError(f"unknown special job {what!r}: one of {', '.join(SPECIALS)}")

    def _on_run(self, message: dict[str, Any]) -> None:
        watched = self.watches.get(str(message["id"]))
        if watched is not None:
            what, at = watched
            if what == "poison job":
                attempt = int(message.get("a", 0)) + 1
                self.mark(self.kind, f"poison job attempt {attempt} failed")
                if attempt >= 3:
                    self.watches.pop(str(message["id"]), None)
            else:
                self.watches.pop(str(message["id"]), None)
                extra = ""
                if what == "urgent job":
                    if self.admin_lock.acquire(timeout=0.5):   # the broker's count now, not at the last sample
                        try:
                            queue = read_state(self.kind, self.admin, self.instance)
                            waiting = (queue.get("waiting") or 0) + (queue.get("prioritized") or 0)
                            extra = f"; {waiting} jobs still waiting"
                        except Exception:  # noqa: BLE001 - the marker goes out without the count
                            pass
                        finally:
                            self.admin_lock.release()
                late = f"{message.get('lat', 0):.0f} ms after due" if what.startswith("delayed") else \
                    f"{time.time() - at:.2f} s after publish"
                self.mark(self.kind, f"{what} ran, {late}{extra}")
        if message.get("r") and self.killed_at is not None:
            self.mark(self.kind, f"jobs back: first redelivery {time.time() - self.killed_at:.2f} s after the kill")
            self.killed_at = None

    # ------------------------------------------------------------------ state
    def _held(self, queue: dict[str, Any]) -> int | None:
        """How many jobs the broker holds (waiting, delayed, running), or None when unknown. For
        RabbitMQ, whose unacked count lags, at least as many as the workers can hold (prefetch each)."""
        if not queue or "error" in queue:
            return None
        held = sum(queue.get(k) or 0 for k in ("waiting", "prioritized", "delayed", "active"))
        if "unacked" in queue:
            held += max(queue["unacked"] or 0, len(self.consumers) * self.settings.concurrency)
        return held

    def poll(self) -> dict[str, Any]:
        """The broker's queue state (its own counts) and our counters; marks workers that died."""
        queue: dict[str, Any] = {}
        if not self.broker_down:
            try:
                with self.admin_lock:
                    queue = read_state(self.kind, self.admin, self.instance)
            except Exception as exc:  # noqa: BLE001 - a broker being killed cannot be read
                queue = {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
        if hasattr(self.admin, "lane_keys") and queue and "error" not in queue:
            if time.monotonic() - self.lost_checked >= LOST_CHECK_S:
                try:   # Redis can be asked about each job: exact, every old unran job
                    ids = self.tally.old_unran()
                    self.tally.found_missing(ids, redis_missing(self.admin, ids))
                    self.lost_checked = time.monotonic()
                except Exception:  # noqa: BLE001 - a broker being killed cannot be read
                    pass
        else:
            self.tally.check_lost(self._held(queue))
        with self.procs_lock:
            for proc in list(self.consumers):
                if not proc.is_alive() and proc.exitcode not in (None, -signal.SIGTERM, 0):
                    self.consumers.remove(proc)
                    self.mark(self.kind, f"worker {proc.pid} died (exit {proc.exitcode})")
            producer = self.producer_proc
            if producer is not None and not producer.is_alive():
                self.producer_proc = None
                with self.pipes_lock:
                    self.pipe_of.pop(producer, None)
                self.mark(self.kind, f"producer {producer.pid} died (exit {producer.exitcode}): no jobs are sent")
        self.state = {"kind": self.kind, "label": self.label, "client": self.client, "profile": self.profile.name,
                      "promise": self.profile.promise, "shared": self.shared, "broker_down": self.broker_down,
                      "running": self.running, "settings": self.settings.as_dict(),
                      "consumers_alive": sum(p.is_alive() for p in list(self.consumers)),
                      "queue": queue, "counts": self.tally.snapshot(),
                      "profiles": [p.name for p in self.driver.durability]}
        return self.state
