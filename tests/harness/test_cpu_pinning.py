"""Brokers and clients on separate CPUs: the plan, a pinned run on a private Redis (the broker
really runs on its CPUs while the run lasts, and gets them back after), and a run on the shared
Redis, whose affinity pinning never touches."""

from __future__ import annotations

import os

import pytest

from benchmarks.harness import pinning
from benchmarks.harness.runner import run
from benchmarks.harness.scenario import Scenario
from benchmarks.results import files as results

SHORT = dict(broker="redis", profile="user_variables_update", mode="closed", duration_s=2.0, warmup_s=0.5,
             producers=1, consumers=1, concurrency=8, pin_cpus=True)
TWO_CPUS = pytest.mark.skipif(len(pinning.usable_cpus()) < 2, reason="pinning needs 2 CPUs; on 1 it is off, said")


def test_the_plan_gives_the_broker_a_quarter_of_the_cpus_and_says_why():
    two = pinning.plan(True, broker_ours=True, cpus=[0, 1])
    assert (two.broker, two.clients, two.cores) == ((0,), (1,), 2) and two.separate
    eight = pinning.plan(True, broker_ours=True, cpus=range(8))
    assert eight.broker == (0, 1) and eight.clients == tuple(range(2, 8))
    shared = pinning.plan(True, broker_ours=False, cpus=[0, 1])
    assert shared.broker is None and shared.clients == (1,) and "shared" in shared.why and not shared.separate
    for off in (pinning.plan(False, broker_ours=True, cpus=[0, 1]), pinning.plan(True, broker_ours=True, cpus=[3]),
                pinning.plan(True, broker_ours=True, in_process=True, cpus=[0, 1])):
        assert off.broker is None and off.clients is None and off.why.startswith("off")
    assert pinning.plan(True, broker_ours=True, cpus=[3]).record() == {"broker": None, "clients": None, "cores": 1,
                                                                       "why": "off: 1 CPU, nothing to separate"}


def _threads_affinity(pid: int) -> set[tuple[int, ...]]:
    return {tuple(sorted(os.sched_getaffinity(t))) for t in pinning.threads_of(pid)}


@TWO_CPUS
def test_a_pinned_run_puts_a_private_broker_and_every_client_on_their_own_cpus(private_brokers, tmp_path):
    instance = private_brokers.instance("redis")
    before, harness_before = pinning.affinity(instance.pid), pinning.affinity(os.getpid())
    during: list[tuple[set[tuple[int, ...]], list[int] | None]] = []

    def watch(progress: dict) -> None:
        if progress["phase"] == "measuring":
            during.append((_threads_affinity(instance.pid), pinning.affinity(os.getpid())))

    result, path = run(Scenario(**SHORT), url=instance.url, out=tmp_path, progress=watch)
    assert result["status"] == "ok", result["errors"]
    said = results.load(path)["environment"]["cpu_pinning"]
    plan = pinning.plan(True, broker_ours=True)
    assert said["broker"] == list(plan.broker) and said["clients"] == list(plan.clients)
    assert said["broker_pid"] == instance.pid
    assert said["checked"] == {"broker": said["broker"], "clients": said["clients"]}, "what the kernel said"
    assert during, "the run was watched while it measured"
    for broker_threads, harness in during:
        assert broker_threads == {tuple(said["broker"])}, "every thread of the broker on the broker's CPUs"
        assert harness == said["clients"]
    assert pinning.affinity(instance.pid) == before and pinning.affinity(os.getpid()) == harness_before, \
        "what outlives the run gets its CPUs back"
    f = result["figures"]
    assert f["utilisation"]["cpus"] == "pinned sets"
    assert f["utilisation"]["broker_cpus"] == len(said["broker"]) and f["utilisation"]["client_cpus"] == len(
        said["clients"])
    jobs = f["jobs_in_window"]
    assert jobs > 0 and f["cpu_s"]["broker"] > 0 and f["cpu_s"]["harness"] is not None
    assert f["cpu_per_1000_jobs"]["broker"] == pytest.approx(f["cpu_s"]["broker"] / jobs * 1000, abs=1e-4)
    assert f["cpu_per_1000_jobs"]["clients"] == pytest.approx(f["cpu_s"]["clients"] / jobs * 1000, abs=1e-4)
    assert f["jobs_per_broker_cpu_s"] == pytest.approx(jobs / f["cpu_s"]["broker"], abs=0.1)
    assert f["utilisation"]["broker"] == pytest.approx(f["cpu_s"]["broker"] / (f["window_s"] * len(said["broker"])),
                                                       abs=1e-3)
    assert set(f["cpu_busy"]) == {str(c) for c in range(len(f["cpu_busy"]))}


@TWO_CPUS
def test_pinning_never_touches_a_shared_broker(endpoints, tmp_path):
    from benchmarks.harness.resources import broker_pid

    url = endpoints["redis"].url
    pid = broker_pid("redis", url)
    assert pid is not None, "the shared Redis runs on this host"
    before = _threads_affinity(pid)
    during: list[set[tuple[int, ...]]] = []
    result, _ = run(Scenario(**SHORT), url=url, out=tmp_path,
                    progress=lambda p: during.append(_threads_affinity(pid)) if p["phase"] == "measuring" else None)
    assert result["status"] == "ok", result["errors"]
    said = result["environment"]["cpu_pinning"]
    assert said["broker"] is None and "shared" in said["why"] and "broker_pid" not in said
    assert said["clients"] == list(pinning.plan(True, broker_ours=False).clients), "the clients alone are pinned"
    assert during and all(seen == before for seen in during) and _threads_affinity(pid) == before
    assert result["figures"]["utilisation"]["cpus"] == "clients pinned, the broker on every CPU"


@TWO_CPUS
def test_pin_cpus_on_the_command_line_pins_a_broker_of_its_own(tmp_path):
    """``brokerbench run --pin-cpus`` reaches every run, and a shared broker is replaced by a
    private one with the same settings (only such a broker may be pinned)."""
    from benchmarks.commands.run import main, own_broker
    from benchmarks.harness.durability import Placement
    from brokers import registry
    from brokers.instances import owner_of
    from brokers.provision import find

    level = registry.DEFAULT_DURABILITY
    shared = Placement("redis", level, registry.get("redis").at_level(level), find("redis").url, how="found")
    own = own_broker(shared)
    try:
        assert own.instance is not None and own.url != shared.url and owner_of(own.instance.pid) is not None
        assert "--pin-cpus" in own.how
    finally:
        own.close()
    main(["--broker", "redis", "--profile", "user_variables_update", "--mode", "closed", "--duration-s", "1",
          "--warmup-s", "0.3", "--repeat", "1", "--pin-cpus", "--quiet", "--no-report", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("*.json")
    result = results.load(path)
    assert result["scenario"]["pin_cpus"] is True
    assert result["environment"]["cpu_pinning"]["broker"] == list(pinning.plan(True, broker_ours=True).broker)
