"""Results files with known contents for report tests: exactly ``n`` latencies, and an
environment chosen by the test (machine, kernel, commit, dirty or not) instead of this
checkout's, so a test does not depend on where it runs or on the state of the tree."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness.metrics import Recorder, record_us
from benchmarks.harness.scenario import Scenario
from benchmarks.results import files

CPU, CORES, MEMORY_GIB, KERNEL, COMMIT = "Test CPU 9000", 2, 7.5, "Linux 6.1.0-test", "0123456789ab"


def environment(*, cpu: str = CPU, kernel: str = KERNEL, commit: str = COMMIT, dirty: bool = False) -> dict[str, Any]:
    """An environment as :func:`benchmarks.harness.environment.capture` writes it."""
    return {"machine": {"cpu": cpu, "cores": CORES, "memory_gib": MEMORY_GIB, "os": kernel, "arch": "x86_64"},
            "python": "3.11.7", "packages": {"brokerbench": "0.1.0"}, "brokers": {},
            "git_commit": commit + ("-dirty" if dirty else "")}


def write_run(folder: Path, *, broker: str = "redis", profile: str = "mix", mode: str = "open", n: int = 0,
              latency_ms: float = 10.0, spread: float = 0.5, publish_n: int | None = None, jobs_per_s: float = 500.0,
              repetition: int = 0, seed: int = 0, env: dict[str, Any] | None = None, durability: str = "disk",
              label: str = "") -> tuple[dict[str, Any], Path]:
    """One results file (schema-valid) in ``folder``: in open loop ``n`` end-to-end latencies
    and ``publish_n`` (default ``n``) publish latencies, spread uniformly over
    ``latency_ms`` x (1 +- ``spread``); ``jobs_per_s`` as its throughput."""
    rng = random.Random(seed)
    recorder = Recorder()
    for name, count in (("end_to_end_intended", n), ("publish", n if publish_n is None else publish_n)):
        for _ in range(count if mode == "open" else 0):
            record_us(recorder.hists[name], int(latency_ms * (1 + spread * (2 * rng.random() - 1)) * 1e6))
    figures = files.figures(recorder, window_s=5.0, cpu={"broker": 1.0, "producers": 1.0, "consumers": 1.0},
                            timeline={"t_s": [], "sent_per_s": [], "done_per_s": [], "backlog_t_s": [], "backlog": []},
                            worker_counts={})
    figures["throughput"] = {"in_per_s": jobs_per_s, "out_per_s": jobs_per_s}
    figures["jobs_per_cpu_s"] = round(jobs_per_s * 5 / 3, 1)
    scenario = Scenario(broker=broker, profile=profile, mode=mode, rate=300, durability=durability,
                        repetition=repetition, label=label).to_dict()
    result = files.build(scenario, status="ok", errors=[], environment=env or environment(), measured=figures,
                         hist=files.histograms(recorder), started=datetime.now(timezone.utc))
    return result, files.write(result, folder)
