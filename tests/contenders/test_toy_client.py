"""A new client registered from outside touches no existing file: the toy of tests/contenders/toy
(two Redis lists, a role program in plain Python) is named in ``BROKERBENCH_CLIENTS`` and then
listed by ``brokerbench clients``, run by ``brokerbench run --client``, counted like any client
(lost 0, duplicated 0 against the accepted ids), and refused, by name, a level whose adapter
options it does not take. Its role program passes the conformance test
(test_role_protocol.py runs on it too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOY = "toy-redis-list"


def brokerbench(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "BROKERBENCH_CLIENTS": "tests.contenders.toy.client",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "benchmarks.commands.cli", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def toy_keys() -> set[bytes]:
    import redis

    from brokers.provision import find

    return set(redis.Redis.from_url(find("redis").url).scan_iter(match="toy:*"))


def test_the_toy_is_listed_and_runs_through_the_harness_counted_like_any_client(tmp_path):
    keys_before = toy_keys()
    listed = brokerbench("clients")
    assert listed.returncode == 0, listed.stderr
    assert TOY in listed.stdout and "toy (Python, Redis lists)" in listed.stdout, listed.stdout
    done = brokerbench("run", "--client", TOY, "--broker", "redis", "--durability", "memory", "--profile",
                       "user_variables_update", "--mode", "closed", "--duration-s", "1", "--warmup-s", "0.5",
                       "--repeat", "1", "--quiet", "--no-report", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*.json") if p.name != "summary.json"]
    assert len(results) == 1, [p.name for p in tmp_path.iterdir()]
    result = results[0]
    f = result["figures"]
    assert result["status"] == "ok", result["errors"]
    assert result["environment"]["client"]["name"] == TOY and not result["environment"]["client"]["official"]
    assert result["environment"]["client"]["libraries"].get("redis"), result["environment"]["client"]
    assert f["accepted"] > 0 and f["completed"] == f["accepted"], f
    assert (f["lost"], f["duplicated"], f["in_doubt"]) == (0, 0, 0), f
    # Its keys are its own: the harness counted the backlog with the toy's queue view (the
    # closed loop's bound, the end of the run; BullMQ's keys would show 0 however far the toy's
    # list grew) and removed the queue with it.
    assert result["final_stats"] == {"waiting": 0, "active": 0, "delayed": 0, "completed": None,
                                     "failed": None}, result["final_stats"]
    assert toy_keys() - keys_before == set(), "the run left toy keys behind"


def test_the_toy_refuses_an_option_it_does_not_take_by_name():
    from brokers import clients

    from .toy.client import CLIENT

    try:
        clients.register(CLIENT)
        assert CLIENT.options_for_role({"reconnect_for_s": 10.0}) == {}   # the harness's own: dropped
        try:
            CLIENT.options_for_role({"lock_duration_ms": 1000})
        except ValueError as exc:
            assert "lock_duration_ms" in str(exc) and "toy" in str(exc)
        else:
            raise AssertionError("an option the toy does not take was accepted")
    finally:
        clients.unregister(TOY)
