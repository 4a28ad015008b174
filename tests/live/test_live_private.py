"""The live view's broker faults, on the private brokers it starts by default: kill -9 the broker
(it comes back with its data and the load goes on), restart it empty under another durability
profile, drop every client connection (the clients reconnect)."""

from __future__ import annotations

import pytest

from benchmarks.live.lab import Lab
from tests.helpers.waiting import wait_for


@pytest.fixture(scope="module")
def lab():
    lab = Lab().start()
    yield lab
    lab.close()



def ran(lab: Lab) -> dict[str, int]:
    return {k: s.tally.snapshot()["ran"] for k, s in lab.sides.items()}


def markers(lab: Lab, start: str) -> set[str]:
    return {m["side"] for m in lab.snapshot()["markers"] if m["text"].startswith(start)}


def test_broker_kill_profile_change_and_dropped_connections(lab):
    assert all(not s.shared and s.instance is not None for s in lab.sides.values()), "private brokers by default"
    lab.act("start_load", {"rate": 30, "profile": "heavy_workflow_execution", "lock_s": 1})
    wait_for(lambda: min(ran(lab).values()) > 30, 30, "runs on both brokers")

    lab.act("kill_broker", {})
    with pytest.raises(ValueError, match="restarting"):   # a second click while it restarts
        lab.act("kill_broker", {"side": "rabbitmq"})
    wait_for(lambda: markers(lab, "broker back") == set(lab.sides), 90, "both brokers back")
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
