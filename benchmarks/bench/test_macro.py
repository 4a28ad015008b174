"""Macro runs through the harness (pytest-benchmark): one timed round each, figures in extra_info.

    pytest benchmarks/bench --benchmark-only
"""

from __future__ import annotations

import pytest

from benchmarks.harness.runner import run
from benchmarks.harness.scenario import Scenario
from benchmarks.results.percentiles import allowed
from brokers import registry

from .conftest import TINY

SECONDS = 1.0 if TINY else 8.0


def _figures(result: dict) -> dict:
    f = result["figures"]
    e2e = f["latency_ms"]["end_to_end_intended"] if result["scenario"]["mode"] == "open" else \
        f["latency_ms"]["end_to_end"]
    # a percentile only with the samples it needs (None otherwise), beside its n
    return {"status": result["status"], "out_per_s": f["throughput"]["out_per_s"], "p50_ms": allowed(e2e, "p50"),
            "p99_ms": allowed(e2e, "p99"), "latency_n": e2e.get("count"), "lost": f["lost"],
            "duplicated": f["duplicated"], "jobs_per_cpu_s": f["jobs_per_cpu_s"]}


@pytest.mark.parametrize("broker", registry.compared_kinds())
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_mix_through_the_harness(benchmark, broker, mode):
    scenario = Scenario(broker=broker, profile="mix", mode=mode, rate=200, duration_s=SECONDS,
                        warmup_s=SECONDS / 4, drain_timeout_s=20)
    result = benchmark.pedantic(lambda: run(scenario)[0], rounds=1, iterations=1)
    benchmark.extra_info.update(_figures(result))
    assert result["status"] == "ok", result["errors"]


def test_harness_ceiling(benchmark):
    """The harness's own limit: the in-process memory adapter, no-op jobs of ~200 B.

    Filling measures the producer path alone, draining the consumer path alone; a producer
    process and a consumer process run each path on their own core.
    """
    scenario = Scenario(broker="memory", profile="user_variables_update", mode="drain",
                        drain_jobs=20_000 if TINY else 200_000, producers=1, consumers=1, concurrency=1,
                        service_factor=0.0, publish_batch=100)
    result = benchmark.pedantic(lambda: run(scenario)[0], rounds=1, iterations=1)
    drain = result["drain"]
    benchmark.extra_info.update(producer_path_jobs_per_s=drain["fill_jobs_per_s"],
                                consumer_path_jobs_per_s=drain["jobs_per_s"],
                                pair_ceiling_jobs_per_s=min(drain["fill_jobs_per_s"], drain["jobs_per_s"]))
    assert result["figures"]["lost"] == 0
