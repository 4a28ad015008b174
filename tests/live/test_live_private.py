"""The live view's broker faults, on the private brokers it starts by default: its load keeps
every offered job counted for ten seconds and more, kill -9 the broker (it comes back with its
data and the load goes on), restart it empty under another durability profile, drop every
client connection (the clients reconnect), and a broker killed without persistence loses
exactly what it held, which live 'lost' says. One lab for the module."""

from __future__ import annotations

import time

import pytest

from benchmarks.live.broker_state import read_state
from benchmarks.live.lab import ActionFailed, Lab
from benchmarks.live.side import Side
from benchmarks.live.tally import LOST_AFTER_S
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab():
    lab = Lab().start()
    yield lab
    lab.close()


def ran(lab: Lab) -> dict[str, int]:
    return {k: s.tally.snapshot()["ran"] for k, s in lab.sides.items()}


def counts(lab: Lab, key: str) -> dict[str, int]:
    return {k: s.tally.snapshot()[key] for k, s in lab.sides.items()}


def markers(lab: Lab, start: str) -> set[str]:
    return {m["side"] for m in lab.snapshot()["markers"] if m["text"].startswith(start)}


def waiting_for(lab: Lab, check, timeout: float, what: str):
    """wait_for, and the lab's markers in the message when it fails."""
    try:
        return wait_for(check, timeout, what)
    except AssertionError as exc:
        texts = [f'{m["t"]} {m["side"]}: {m["text"]}' for m in lab.snapshot()["markers"]]
        raise AssertionError(f"{exc}; markers: {texts}") from exc


def waiting(side: Side) -> int:
    """The jobs waiting in the broker, in its own (cheap) counts."""
    with side.admin_lock:
        queue = read_state(side.kind, side.admin, None)
    return (queue.get("waiting") or 0) + (queue.get("prioritized") or 0)


def held_by_broker(side: Side) -> int:
    """Every job the broker itself says it holds for the lab's queue (not the lab's counters):
    Redis, its wait, prioritized, active and delayed keys; RabbitMQ, ``rabbitmqctl list_queues``'
    messages (ready and unacknowledged) in the lane and delay queues (not the dead-letter queue)."""
    if side.kind == "redis":
        with side.admin_lock:
            queue = read_state(side.kind, side.admin, None)
        return sum(queue[k] for k in ("waiting", "prioritized", "active", "delayed"))
    done = side.instance.ctl("list_queues", "name", "messages", "-q", "--no-table-headers", timeout=60)
    assert done.returncode == 0, done.stderr
    dead = side.admin.topology.dead_queue
    rows = [line.split() for line in done.stdout.splitlines()]
    return sum(int(n) for name, n in (r for r in rows if len(r) == 2)
               if name.startswith(side.queue) and name != dead)


def test_accepted_keeps_up_with_the_offered_load_for_ten_seconds(lab):
    rate = 100
    lab.act("start_load", {"rate": rate})
    wait_for(lambda: min(counts(lab, "accepted").values()) > 0, 60, "first acceptances on both brokers")
    start, first = time.monotonic(), counts(lab, "accepted")
    time.sleep(12)
    seconds, last = time.monotonic() - start, counts(lab, "accepted")
    lab.act("stop_load", {})
    offered = rate * seconds
    accepted = {k: last[k] - first[k] for k in last}
    assert all(abs(n - offered) <= 0.05 * offered for n in accepted.values()), \
        f"accepted in {seconds:.1f} s: {accepted}; offered {offered:.0f} (rate x seconds)"
    assert counts(lab, "in_doubt") == counts(lab, "refused") == {"redis": 0, "rabbitmq": 0}


def test_broker_kill_profile_change_and_dropped_connections(lab):
    assert all(not s.shared and s.instance is not None for s in lab.sides.values()), "private brokers by default"
    before = ran(lab)
    lab.act("start_load", {"rate": 30, "profile": "heavy_workflow_execution", "lock_s": 1})
    wait_for(lambda: all(n > before[k] + 30 for k, n in ran(lab).items()), 30, "runs on both brokers")

    lab.act("kill_broker", {})
    with pytest.raises(ActionFailed, match="restarting"):   # a second click while it restarts
        lab.act("kill_broker", {"side": "rabbitmq"})
    waiting_for(lab, lambda: markers(lab, "broker back") == set(lab.sides), 90, "both brokers back")
    after_restart = ran(lab)
    wait_for(lambda: all(n > after_restart[k] + 30 for k, n in ran(lab).items()), 60, "load going on after")

    done = lab.act("drop_connections", {})
    assert all(int(text.split()[1]) > 0 for text in done.values()), done
    after_drop = ran(lab)
    wait_for(lambda: all(n > after_drop[k] + 30 for k, n in ran(lab).items()), 60, "load going on after the drop")

    lab.act("set_profile", {"profiles": {"redis": "no persistence", "rabbitmq": "transient messages"}})
    states = {k: s.poll() for k, s in lab.sides.items()}
    assert {k: s["profile"] for k, s in states.items()} == {"redis": "no persistence", "rabbitmq": "transient messages"}
    assert all(s["running"] for s in states.values()), "the load restarts on the new profile"
    wait_for(lambda: min(ran(lab).values()) > 20, 30, "runs on the new profile")

    lab.act("set_profile", {"side": "rabbitmq", "profiles": {"rabbitmq": "quorum + confirms"}})  # another queue type
    wait_for(lambda: ran(lab)["rabbitmq"] > 20, 30, "runs on quorum queues (no priorities there)")
    lab.act("set_profile", {"side": "rabbitmq", "profiles": {"rabbitmq": "persistent + confirms"}})
    wait_for(lambda: ran(lab)["rabbitmq"] > 20, 30, "runs on classic queues again")
    lab.act("stop_load", {})


def test_a_broker_killed_without_persistence_loses_what_it_held_and_lost_says_so(lab):
    lab.act("set_profile", {"profiles": {"redis": "no persistence", "rabbitmq": "transient messages"}})
    # The load outruns one slow worker: a backlog builds; then everything stops and it stays.
    lab.act("start_load", {"rate": 100, "profile": "heavy_workflow_execution", "consumers": 1, "concurrency": 1,
                           "time_scale": 0.5})
    wait_for(lambda: all(waiting(s) >= 200 for s in lab.sides.values()), 60, "a backlog on both brokers")
    lab.act("stop_load", {})
    before = {k: held_by_broker(s) for k, s in lab.sides.items()}
    back = len([m for m in lab.snapshot()["markers"] if m["text"].startswith("broker back")])

    lab.act("kill_broker", {})
    waiting_for(lab, lambda: len([m for m in lab.snapshot()["markers"] if m["text"].startswith("broker back")])
                == back + 2, 90, "both brokers back")
    after = {k: held_by_broker(s) for k, s in lab.sides.items()}
    vanished = {k: before[k] - after[k] for k in before}
    assert all(n >= 200 for n in vanished.values()), f"held before the kill {before}, after {after}"

    try:
        wait_for(lambda: counts(lab, "lost") == vanished, LOST_AFTER_S + 30, f"lost == vanished {vanished}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; lost {counts(lab, 'lost')}, waiting to run "
                             f"{counts(lab, 'waiting_to_run')}") from exc
    time.sleep(2)   # and it stays so
    assert counts(lab, "lost") == vanished
    assert counts(lab, "in_doubt") == {"redis": 0, "rabbitmq": 0}
