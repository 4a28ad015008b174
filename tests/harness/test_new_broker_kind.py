"""A broker kind added from outside: one descriptor, no other file changed.

The toy kind (tests/helpers/toy_driver.py) is the in-process adapter under another name. Once
registered, the harness runs it, a fault scenario runs on it, the CLI offers it, and the
contract suite runs every contract test on it, although nothing under brokers/ or benchmarks/
names it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.commands.run import build_parser
from benchmarks.faults import poison
from benchmarks.faults.common import PrivateBrokers, Session
from benchmarks.harness.runner import run
from benchmarks.harness.scenario import Scenario
from brokers import registry
from tests.helpers import toy_driver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def toy():
    driver = registry.register(toy_driver.DRIVER)
    yield driver
    registry.unregister(driver.kind)


def test_nothing_in_the_library_names_the_toy_kind():
    for folder in ("brokers", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            assert not re.search(r"\btoy\b", path.read_text()), path


def test_the_harness_a_fault_scenario_and_the_cli_pick_up_a_registered_kind(toy, tmp_path):
    result, _ = run(Scenario(broker="toy", profile="user_variables_update", mode="closed", duration_s=0.5,
                             warmup_s=0.1, consumers=1, concurrency=4, service_factor=0.0), out=tmp_path)
    assert result["status"] == "ok", result["errors"]
    f = result["figures"]
    assert f["lost"] == 0 and f["completed"] == f["accepted"] > 0
    assert result["environment"]["brokers"]["toy"]["kind"] == "toy"

    brokers = PrivateBrokers()
    try:
        rows = poison.run_scenario(Session(brokers, small=True, out=tmp_path, kinds=["toy"]))
    finally:
        brokers.close()
    assert [r.broker for r in rows] == ["toy"]
    assert rows[0].met and rows[0].lost == 0, rows[0]

    assert build_parser().parse_args(["--broker", "toy"]).broker == ["toy"]


def test_the_contract_suite_runs_on_a_registered_kind():
    env = {**os.environ, registry.ENV_DRIVERS: "tests.helpers.toy_driver"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/contract/test_contract.py", "-k", "toy"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", proc.stdout).group(1))
    memory = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                             "tests/contract/test_contract.py", "-k", "memory"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    collected = int(re.search(r"(\d+)/\d+ tests collected", memory.stdout).group(1))
    assert passed == collected > 10, "every contract test the in-process adapter runs, the toy kind runs too"


def test_a_feature_a_kind_declares_unsupported_is_skipped_with_its_reason_never_failed():
    env = {**os.environ, registry.ENV_DRIVERS: "tests.helpers.toy_lacking_driver"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
                           "tests/contract/test_contract.py", "-k", "lacking"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"(\d+) passed, 1 skipped", proc.stdout), proc.stdout[-1500:]
    skipped = [line for line in proc.stdout.splitlines() if " SKIPPED " in line]
    assert len(skipped) == 1 and "test_priority_order_under_backlog[lacking]" in skipped[0], skipped
    why = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED [1]")]
    assert len(why) == 1 and "lacking declares no priority: every job waits in one FIFO line" in why[0], why
