"""The live view's producer process: every accepted id reaches the lab (not only those of the
first report), and refused, in-doubt and unreachable outcomes are reported apart, as the
contract's three fates."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import uuid
from multiprocessing.connection import Connection

import pytest

from benchmarks.live import load
from benchmarks.live.broker_state import read_state
from brokers import registry
from brokers.contract import BrokerUnavailable, Fate, PublishInDoubt, PublishRejected, UnavailableInDoubt
from brokers.provision import find


def messages(conn: Connection) -> list[dict]:
    out = []
    while conn.poll():
        try:
            out.append(json.loads(conn.recv_bytes()))
        except EOFError:
            break
    return out


@pytest.mark.parametrize("kind", registry.compared_kinds())
def test_every_accepted_id_is_reported_until_the_producer_stops(kind):
    """No consumers: what the broker holds at the end is exactly what the producer reported
    accepted, reported over many messages (the first 0.1 s of acceptances alone would not do)."""
    settings = load.LoadSettings(rate=200, profile="user_variables_update")
    queue = f"{load.QUEUE}-test-{uuid.uuid4().hex[:6]}"
    url = find(kind).url
    profile = registry.get(kind).at_level(registry.DEFAULT_DURABILITY)
    options = load.broker_options(kind, settings, dict(profile.options))
    admin = registry.get(kind).open(url, queue=queue, **options)
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=load.producer_main, args=(writer, kind, url, queue, options, settings.as_dict()),
                       daemon=True)
    try:
        proc.start()
        writer.close()
        got: list[dict] = []
        deadline = time.monotonic() + 60
        while not any(m["e"] == "acc" for m in got) and time.monotonic() < deadline:   # it started
            reader.poll(0.5)
            got += messages(reader)
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGTERM)   # as the lab stops the load: it reports its last confirms
        proc.join(30)
        assert proc.exitcode == 0, f"the producer did not stop cleanly on SIGTERM: exit {proc.exitcode}"
        got += messages(reader)
        accepted = [i for m in got if m["e"] == "acc" for i in m["ids"]]
        assert not [m for m in got if m["e"] != "acc"], f"nothing refused or in doubt here: {got[-3:]}"
        assert len(accepted) == len(set(accepted)), "each accepted id is reported once"
        assert sum(m["e"] == "acc" for m in got) > 3, "acceptances reported all along, not once"
        state = read_state(kind, admin, None)
        held = (state.get("waiting") or 0) + (state.get("prioritized") or 0)
        assert held == len(accepted), f"the broker holds {held} jobs; {len(accepted)} were reported accepted"
        if hasattr(admin, "lane_keys"):   # Redis: the very same ids
            in_redis = {i.decode() for keys in admin.lane_keys.values() for i in admin.client.lrange(keys.wait, 0, -1)}
            assert in_redis == set(accepted)
    finally:
        if proc.is_alive():
            proc.kill()
        reader.close()
        admin.remove()
        admin.close()


class Pipe:
    def __init__(self) -> None:
        self.reader, self.writer = multiprocessing.Pipe(duplex=False)
        self.reports = load.Reports(self.writer)

    def outcome(self, exc: Exception, own: list[str]) -> tuple[bool, list[dict]]:
        def step() -> None:
            raise exc
        went_on = load._settle(self.reports, step, own)
        return went_on, messages(self.reader)


def test_refused_in_doubt_and_unreachable_are_reported_apart():
    pipe = Pipe()
    pipe.reports.on_accepted(["a1"])
    # Redis refuses (maxmemory): no ids listed, the fate says it. Acceptances before it go first.
    went_on, got = pipe.outcome(PublishRejected("OOM", [], [None], fates=[Fate.REFUSED]), ["r1"])
    assert went_on and got == [{"e": "acc", "ids": ["a1"], "t": got[0]["t"]},
                                {"e": "ref", "n": 1, "why": "OOM"}]
    # A confirm timeout: this job and an earlier one in doubt, one earlier one refused (nacked).
    exc = PublishInDoubt("no confirm in 5 s", ["r0"], [None], in_doubt=["d0"], fates=[Fate.IN_DOUBT])
    went_on, got = pipe.outcome(exc, ["d1"])
    assert went_on and got == [{"e": "doubt", "n": 2, "ids": ["d0", "d1"], "why": "no confirm in 5 s"},
                               {"e": "ref", "n": 1, "why": "no confirm in 5 s"}]
    # This call's job accepted (in flight), an earlier one in doubt: the accepted one is left to on_accepted.
    exc = PublishInDoubt("channel closed", [], ["x1"], in_doubt=["d2"], fates=[Fate.ACCEPTED])
    assert pipe.outcome(exc, ["x1"])[1] == [{"e": "doubt", "n": 1, "ids": ["d2"], "why": "channel closed"}]
    # The broker went away with the job unanswered: in doubt, and an outage (the producer pauses).
    went_on, got = pipe.outcome(UnavailableInDoubt("gone", [], [None], fates=[Fate.IN_DOUBT]), ["d3"])
    assert not went_on and got == [{"e": "doubt", "n": 1, "ids": ["d3"], "why": "gone"}]
    # Unreachable, nothing sent: the job is certainly not held.
    went_on, got = pipe.outcome(BrokerUnavailable("connection refused"), ["u1"])
    assert not went_on and got == [{"e": "err", "n": 1, "why": "connection refused"}]
    # While reading confirms (idle, flush): only the earlier jobs the error names.
    went_on, got = pipe.outcome(PublishInDoubt("no confirm", in_doubt=["d4"]), [])
    assert went_on and got == [{"e": "doubt", "n": 1, "ids": ["d4"], "why": "no confirm"}]
