"""CPUs held out of idle states while a run measures (benchmarks/harness/cpu_idle.py): the
kernel's own reading of the PM QoS latency is 0 while the run measures and back after it, the
results file says so, ``--awake-cpus`` reaches every run, and a machine where the request
cannot be made runs on and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.harness.cpu_idle import QOS_DEVICE, AwakeCpus
from benchmarks.harness.runner import run
from benchmarks.harness.scenario import Scenario
from benchmarks.results import files as results

SHORT = dict(broker="redis", profile="user_variables_update", mode="closed", duration_s=1.5, warmup_s=0.3,
             producers=1, consumers=1, concurrency=8, awake_cpus=True)


def test_a_run_holds_the_cpus_awake_while_it_measures_and_lets_them_sleep_after(endpoints, tmp_path):
    probe = AwakeCpus()
    before = probe.in_force()
    assert before is not None and before > 0, f"{QOS_DEVICE} is readable on CI's machines and nothing holds it"
    during: list[int | None] = []
    result, path = run(Scenario(**SHORT), url=endpoints["redis"].url, out=tmp_path,
                       progress=lambda p: during.append(probe.in_force()) if p["phase"] == "measuring" else None)
    assert result["status"] == "ok", result["errors"]
    assert during and set(during) == {0}, "idle CPUs poll (0 us wake-up) for as long as the run measures"
    assert probe.in_force() == before, "the request ends with the run"
    idle = results.load(path)["environment"]["cpu_pinning"]["idle"]
    assert idle["awake"] is True and str(QOS_DEVICE) in idle["how"]
    assert result["figures"]["jobs_in_window"] > 0 and result["figures"]["lost"] == 0


def test_a_run_without_it_lets_the_cpus_sleep_and_says_so(endpoints, tmp_path):
    probe = AwakeCpus()
    during: list[int | None] = []
    result, _ = run(Scenario(**{**SHORT, "awake_cpus": False}), url=endpoints["redis"].url, out=tmp_path,
                    progress=lambda p: during.append(probe.in_force()) if p["phase"] == "measuring" else None)
    assert result["status"] == "ok", result["errors"]
    assert during and 0 not in during
    idle = result["environment"]["cpu_pinning"]["idle"]
    assert idle["awake"] is False and "not asked" in idle["why"]


def test_awake_cpus_on_the_command_line_reaches_every_run(endpoints, tmp_path):
    from benchmarks.commands.run import main

    main(["--broker", "redis", "--profile", "user_variables_update", "--mode", "closed", "--duration-s", "1",
          "--warmup-s", "0.3", "--repeat", "1", "--awake-cpus", "--quiet", "--no-report", "--out", str(tmp_path),
          "--url", endpoints["redis"].url, "--durability", "memory"])
    (path,) = tmp_path.glob("*.json")
    result = results.load(path)
    assert result["scenario"]["awake_cpus"] is True and result["environment"]["cpu_pinning"]["idle"]["awake"]


def test_where_the_request_cannot_be_made_the_run_is_told_why(tmp_path):
    missing = AwakeCpus(tmp_path / "no-such-device")
    assert missing.hold() is False and not missing.held
    said = missing.record()
    assert said["awake"] is False and "cannot open" in said["why"]
    missing.release()  # nothing held: nothing to do, no error
    assert missing.in_force() is None


@pytest.mark.parametrize("twice", [1, 2])
def test_holding_twice_is_one_request_and_release_ends_it(twice):
    awake = AwakeCpus()
    for _ in range(twice):
        assert awake.hold()
    assert awake.in_force() == 0
    awake.release()
    assert awake.in_force() != 0 and not awake.held and awake.was_held


def test_the_report_says_whether_the_cpus_were_awake():
    from benchmarks.results.cost_section import idle_words, where_they_ran

    def run_file(awake: bool | None) -> dict:
        pinned = {"broker": [0], "clients": [1], "cores": 2, "why": "pinned"}
        if awake is not None:
            pinned["idle"] = {"awake": awake}
        return {"environment": {"cpu_pinning": pinned}}

    assert idle_words([run_file(True), run_file(True)]) == "CPUs awake"
    assert idle_words([run_file(False)]) == "CPUs left to idle"
    assert idle_words([run_file(True), run_file(False), run_file(None)]) == "CPUs awake in 1 of 3 runs"
    assert idle_words([run_file(None)]) == "", "files from before the setting existed say nothing"
    assert where_they_ran([run_file(True)]) == "broker 0, clients 1 (CPUs awake)"


def test_a_paced_producer_spins_less_while_the_cpus_are_awake():
    from benchmarks.harness.cpu_idle import tighten_timer_slack
    from benchmarks.harness.roles import SPIN_AWAKE_S, SPIN_S, spin_margin

    assert spin_margin() == SPIN_S, "idle CPUs wake late: the producer spins the long stretch"
    awake = AwakeCpus()
    try:
        assert awake.hold()
        assert spin_margin() == SPIN_AWAKE_S < SPIN_S
    finally:
        awake.release()
    assert tighten_timer_slack(1000) == 1000


def test_no_op_runs_of_other_settings_get_rows_of_their_own():
    from benchmarks.results.clients_section import _variant

    def run_file(label: str, broker: str) -> dict:
        return {"scenario": {"label": label, "broker": broker}}

    assert _variant(run_file("drain-redis", "redis"), "drain") == ""
    assert _variant(run_file("drain", "redis"), "drain") == ""
    assert _variant(run_file("drain-batch1000-redis", "redis"), "drain") == " (batch1000)"
    assert _variant(run_file("drain-each-rabbitmq", "rabbitmq"), "drain") == " (each)"
    assert _variant(run_file("latency-rabbitmq", "rabbitmq"), "latency") == ""


def test_a_fill_whose_calls_did_not_await_their_confirms_is_marked():
    from benchmarks.results.clients_section import _sent_ahead

    def run_file(client: str, confirms: str) -> dict:
        return {"scenario": {"broker": "rabbitmq", "client": client, "broker_options": {"confirms": confirms}}}

    assert _sent_ahead(run_file("", "windowed")) and _sent_ahead(run_file("rabbitmq", "windowed"))
    assert not _sent_ahead(run_file("", "each")), "each confirm awaited: like the contenders"
    assert not _sent_ahead(run_file("amqplib-node", "windowed")), "a contender's call awaits its confirm"
    assert not _sent_ahead({"scenario": {"broker": "redis", "client": ""}})
    text = (Path(__file__).resolve().parents[2] / "reports" / "reference" / "report.md").read_text()
    assert "‡ our AMQP producer with windowed confirms" in text, "the committed reference says so"
