"""``pytest benchmarks/bench --benchmark-only`` on the tiny profile, so the benchmarks cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pytest_benchmarks_run_on_the_tiny_profile(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/bench", "--benchmark-only", "-q", "-p", "no:cacheprovider",
         f"--benchmark-json={out}"],
        cwd=ROOT, env={**os.environ, "BROKERBENCH_PROFILE": "tiny"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    names = {b["name"] for b in data["benchmarks"]}
    for expected in ("test_enqueue_round_trip[redis]", "test_enqueue_round_trip[rabbitmq]",
                     "test_full_job_lifecycle[rabbitmq]", "test_publish_batch_of_100[redis]",
                     "test_harness_ceiling", "test_mix_through_the_harness[open-redis]"):
        assert expected in names
    ceiling = next(b for b in data["benchmarks"] if b["name"] == "test_harness_ceiling")
    assert ceiling["extra_info"]["pair_ceiling_jobs_per_s"] > 0
    macro = next(b for b in data["benchmarks"] if b["name"] == "test_mix_through_the_harness[open-rabbitmq]")
    assert macro["extra_info"]["status"] == "ok" and macro["extra_info"]["lost"] == 0
