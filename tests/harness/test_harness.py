"""The harness measured against known answers: percentiles, coordinated omission, losses,
duplicates, a broker that dies mid-run, and every mode's results file."""

from __future__ import annotations

import json
import threading
import time

import jsonschema
import pytest

from benchmarks.harness.metrics import Recorder, SequenceCounts, loss_and_duplicates, summary
from benchmarks.harness.runner import run
from benchmarks.harness.scenario import Scenario, load_scenarios
from benchmarks.harness.suite import default_workloads, on_brokers
from benchmarks.harness.workloads import PROFILES, open_loop_schedule
from benchmarks.results import compare
from benchmarks.results import files as results
from benchmarks.results.summary import summary_rows
from brokers import registry

FAST = dict(broker="memory", duration_s=1.0, warmup_s=0.3, producers=1, consumers=1, concurrency=4,
            service_factor=0.0, drain_timeout_s=10)


def test_percentiles_of_a_known_stream_and_merging():
    whole, halves = Recorder(), [Recorder(), Recorder()]
    for r in [whole, *halves]:
        r.window_end_ns = 2**62
    for ms in range(1, 10_001):  # 1..10,000 ms, uniform
        value = ms * 1_000_000
        whole._add("end_to_end", value)
        halves[ms % 2]._add("end_to_end", value)
    whole.flush()
    s = summary(whole.hists["end_to_end"])
    assert s["count"] == 10_000
    for name, expected in (("p50", 5000), ("p90", 9000), ("p99", 9900), ("p99_9", 9990), ("max", 10_000)):
        assert abs(s[name] - expected) <= expected * 0.001, (name, s[name])  # HDR: 3 significant digits
    assert abs(s["mean"] - 5000.5) < 5
    merged = Recorder()
    for half in halves:
        merged.merge_json(half.to_json())
    assert summary(merged.hists["end_to_end"]) == s


def test_losses_and_duplicates_are_counted_exactly_from_sequences():
    sent, seen = SequenceCounts(), SequenceCounts()
    for seq in range(100):
        sent.add(0, seq)
        if seq not in (7, 50):          # two lost
            seen.add(0, seq)
    seen.add(0, 3)                       # two duplicate runs of 3, one of 9
    seen.add(0, 3)
    seen.add(0, 9)
    seen.add(1, 0)                       # ran but never accepted
    counts = loss_and_duplicates(sent, seen)
    assert {k: counts[k] for k in ("accepted", "ran", "lost", "duplicated", "unexpected")} == \
        {"accepted": 100, "ran": 99, "lost": 2, "duplicated": 3, "unexpected": 1}
    assert counts["refused"] == counts["in_doubt"] == counts["refused_ran"] == 0


def test_every_sent_job_has_one_outcome_and_in_doubt_is_counted_apart():
    """Accepted, refused and in doubt are told apart: a job in doubt that ran is neither lost
    nor unexpected; one that never ran is not lost (it may never have been held); a refused job
    that ran is a defect of its own (refused_ran), never hidden among "unexpected"."""
    sent, seen, refused, doubt = SequenceCounts(), SequenceCounts(), SequenceCounts(), SequenceCounts()
    for seq in range(10):
        sent.add(0, seq)
        seen.add(0, seq)
    for seq in range(10, 20):            # in doubt: 4 ran once, 2 twice, 4 never
        doubt.add(0, seq)
        for _ in range(1 if seq < 14 else 2 if seq < 16 else 0):
            seen.add(0, seq)
    for seq in range(20, 25):            # refused: one ran anyway
        refused.add(0, seq)
    seen.add(0, 24)
    counts = loss_and_duplicates(sent, seen, refused, doubt)
    assert counts["accepted"] + counts["refused"] + counts["in_doubt"] == 25
    assert (counts["in_doubt"], counts["doubt_ran"], counts["doubt_twice"], counts["doubt_never"]) == (10, 4, 2, 4)
    assert (counts["refused"], counts["refused_ran"]) == (5, 1)
    assert (counts["lost"], counts["unexpected"], counts["duplicated"]) == (0, 0, 2)


def test_injected_losses_and_duplicates_are_counted_exactly(tmp_path):
    faults = {"drop": [5, 17, 42, 199], "duplicate": [3, 9, 120]}
    scenario = Scenario(mode="drain", drain_jobs=400, broker_options={"faults": faults}, **{
        k: v for k, v in FAST.items() if k not in ("duration_s", "warmup_s")})
    result, path = run(scenario, out=tmp_path)
    f = result["figures"]
    assert (f["accepted"], f["lost"], f["duplicated"]) == (400, 4, 3)
    assert f["completed"] == 396 and f["redelivered"] == 3
    assert results.load(path)["figures"]["lost"] == 4


def test_a_producer_stall_shows_in_latency_from_intended_time(tmp_path):
    # The broker stalls one publish call for 400 ms, 150 jobs into an open-loop run at 200/s:
    # jobs due meanwhile are sent late. Latency from the actual send hides it; from the intended
    # time it does not (coordinated omission).
    scenario = Scenario(mode="open", rate=200, profile="user_variables_update",
                        broker_options={"faults": {"stall_at": 150, "stall_s": 0.4}},
                        **{**FAST, "duration_s": 1.5, "warmup_s": 0.2})
    result, _ = run(scenario, out=tmp_path)
    lat = result["figures"]["latency_ms"]
    assert lat["send_delay"]["max"] >= 350
    assert lat["end_to_end_intended"]["max"] >= 350
    assert lat["end_to_end"]["p99"] < 100, "from the actual send, the stall is invisible"
    assert lat["end_to_end_intended"]["p99"] > 5 * lat["end_to_end"]["p99"]


@pytest.mark.parametrize("mode", ["closed", "open", "sweep", "drain"])
def test_every_mode_writes_a_valid_results_file(mode, tmp_path):
    scenario = Scenario(mode=mode, rate=300, drain_jobs=500, sweep_rates=(100, 300), profile="user_variables_update",
                        **FAST)
    result, path = run(scenario, out=tmp_path)
    assert result["status"] == "ok", result["errors"]
    loaded = results.load(path)  # validates against the schema
    assert loaded["scenario"]["mode"] == mode
    f = loaded["figures"]
    assert f["lost"] == 0 and f["duplicated"] == 0 and f["completed"] == f["accepted"] > 0
    assert loaded["histograms"]["overall"]["end_to_end"]
    if mode == "sweep":
        assert [s["offered_rate"] for s in loaded["steps"]] == [100, 300]
        assert loaded["max_sustainable_rate"] == 300
    if mode == "drain":
        assert loaded["drain"]["jobs"] == 500 and loaded["drain"]["jobs_per_s"] > 0
    if mode == "open":
        assert f["latency_ms"]["end_to_end_intended"]["count"] > 0
        assert abs(f["throughput"]["in_per_s"] - 300) < 30


def test_results_file_rejects_what_the_schema_forbids(tmp_path):
    result, path = run(Scenario(mode="closed", **FAST), out=tmp_path)
    broken = json.loads(path.read_text())
    broken["figures"]["lost"] = -1
    with pytest.raises(jsonschema.ValidationError, match="minimum"):
        results.validate(broken)
    broken["figures"]["lost"] = 0
    del broken["environment"]
    with pytest.raises(jsonschema.ValidationError, match="environment"):
        results.validate(broken)


@pytest.mark.parametrize("broker", registry.compared_kinds())
def test_real_brokers_in_processes(broker, tmp_path, endpoints):
    scenario = Scenario(broker=broker, profile="mix", mode="open", rate=150, duration_s=2, warmup_s=0.5,
                        producers=2, consumers=2, concurrency=8, drain_timeout_s=20)
    result, path = run(scenario, url=endpoints[broker].url, out=tmp_path)
    assert result["status"] == "ok", result["errors"]
    f = result["figures"]
    assert f["lost"] == 0 and f["duplicated"] == 0 and f["completed"] == f["accepted"] > 200
    assert set(f["per_type"]) == set(PROFILES["mix"])
    assert f["cpu_s"]["producers"] > 0 and f["cpu_s"]["consumers"] > 0
    assert f["cpu_s"]["broker"] is not None and f["cpu_s"]["broker"] > 0
    env = result["environment"]["brokers"][broker]
    assert env["version"] and "guest:guest" not in path.read_text()
    assert [b for b in f["timeline"]["backlog"] if b is not None], "the backlog was sampled"


@pytest.mark.parametrize("broker", registry.compared_kinds()[:1])
def test_a_broker_that_dies_mid_run_gives_an_error_and_partial_results(broker, tmp_path):
    from brokers.instances import private_instance

    with private_instance(broker) as private:
        scenario = Scenario(broker=broker, profile="user_variables_update", mode="closed", duration_s=20,
                            warmup_s=0.5, producers=1, consumers=1, concurrency=4,
                            broker_options={"reconnect_for_s": 2.0})
        threading.Timer(2.5, private.kill).start()
        started = time.monotonic()
        result, path = run(scenario, url=private.url, out=tmp_path)
    assert time.monotonic() - started < 45, "no hang"
    assert result["status"] == "failed"
    assert any("unreachable" in e or "Connection" in e or "connect" in e for e in result["errors"]), result["errors"]
    assert result["figures"]["accepted"] > 0, "what was measured before the crash is kept"
    assert results.load(path)["status"] == "failed"


def test_open_loop_schedule_rate_and_bursts():
    schedule = open_loop_schedule("mix", rate=100, duration_s=10, seed=3, burst_every_s=2)
    assert len(schedule) == pytest.approx(1000, abs=20)
    offsets = [t for t, _ in schedule]
    assert offsets == sorted(offsets) and offsets[-1] < 10
    bursts = [t for t, kind in schedule if kind == "statistics_aggregation"]
    assert set(bursts) == {1.0, 3.0, 5.0, 7.0, 9.0} and len(bursts) == 100
    assert schedule == open_loop_schedule("mix", rate=100, duration_s=10, seed=3, burst_every_s=2)


def test_scenarios_load_from_toml_and_refuse_unknown_keys(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[scenario]]\nmode = "open"\nrate = 50\n\n'
                    '[[scenario]]\nbroker = "memory"\nprofile = "heavy_workflow_execution"\nlabel = "x"\n')
    loaded = load_scenarios(path)
    assert [(s.broker, s.mode, s.profile) for s in loaded] == [("", "open", "mix"),
                                                               ("memory", "closed", "heavy_workflow_execution")]
    kinds = registry.compared_kinds()
    bound = on_brokers(loaded, kinds)
    assert [(s.broker, s.mode) for s in bound] == [(k, "open") for k in kinds] + [("memory", "closed")]
    assert bound[-1].label == "x", "a workload bound to a broker in its file runs there only, as named"
    path.write_text('mode = "open"\nrat = 5\n')
    with pytest.raises(ValueError, match="unknown scenario keys"):
        load_scenarios(path)
    with pytest.raises(ValueError, match="mode must be"):
        Scenario(mode="burst")
    with pytest.raises(ValueError, match="unknown broker 'kafka'"):
        Scenario(broker="kafka")


def test_default_suite_and_summary_table(tmp_path):
    workloads = default_workloads()
    assert len(workloads) == 8 and not any(w.broker for w in workloads), "the default suite names no broker"
    suite = on_brokers(workloads, registry.compared_kinds())
    assert len(suite) == 8 * len(registry.compared_kinds())
    assert {(s.broker, s.mode) for s in suite} == {(b, m) for b in registry.compared_kinds()
                                                   for m in ("closed", "open")}
    assert {s.profile for s in suite} == set(PROFILES)
    assert suite[0].broker != suite[1].broker, "brokers interleave, so drift hits them alike"
    done = [run(s.on("memory").with_(duration_s=0.5, warmup_s=0.1, service_factor=0), out=tmp_path)[0]
            for s in workloads[:2]]
    rows = summary_rows(done)
    assert len(rows) == 1 and rows[0]["max_jobs_per_s"] > 0 and rows[0]["p99_ms"] is not None
    table = compare.rows(compare.expand([tmp_path]))
    assert {r["mode"] for r in table} == {"closed", "open"}


def test_cli_run_and_compare(tmp_path, capsys):
    from benchmarks.commands.cli import main

    code = main(["run", "--broker", "memory", "--profile", "user_variables_update", "--mode", "open",
                 "--rate", "100", "--duration-s", "0.5", "--warmup-s", "0.1", "--service-factor", "0", "--quiet",
                 "--repeat", "2", "--out", str(tmp_path)])
    assert code == 0
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2, "one file per repetition"
    assert {results.load(f)["scenario"]["repetition"] for f in files} == {1, 2}
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists(), "the run ends with its report"
    out = capsys.readouterr().out
    assert "report.md" in out and "(min-max)" in out
    assert main(["compare", str(files[0])]) == 0
    out = capsys.readouterr().out
    assert "memory" in out and "user_variables_update" in out


def _cut_writer(conn):
    """A role that dies in the middle of a message: a length header for 1,000 bytes, then 10."""
    import os
    import struct

    os.write(conn.fileno(), struct.pack("!i", 1000) + b"0123456789")
    os._exit(0)


def _good_writer(conn):
    for n in range(3):
        conn.send(("progress", "consumer", 1, n))
    conn.send(("result", "consumer", 1, {}, None, {}))


def test_a_role_that_dies_mid_message_breaks_only_its_own_pipe():
    """Each role writes to a pipe of its own: one killed in the middle of a write (a SIGKILLed
    consumer) cannot block or garble what the others send, as it could with one shared queue
    whose lock it held."""
    import multiprocessing

    from benchmarks.harness.supervision import Inbox, RoleMessages, drain_messages

    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    children = [ctx.Process(target=target, args=(writer,)) for target, (_, writer) in
                zip((_cut_writer, _good_writer), pipes, strict=True)]
    for child in children:
        child.start()
    for _, writer in pipes:
        writer.close()
    inbox = Inbox(readers=[reader for reader, _ in pipes])
    watch = RoleMessages(Scenario(broker="memory"), {"producer": 0, "consumer": 2})
    deadline = time.monotonic() + 20
    # Until the good role's report is in and the cut pipe was dropped: the two come in either order.
    while (("consumer", 1) not in watch.reports or len(inbox.readers) > 1) and time.monotonic() < deadline:
        drain_messages(inbox, watch, 0.2)
    for child in children:
        child.join(10)
    assert ("consumer", 1) in watch.reports and watch.progress[("consumer", 1)] == 2
    assert len(inbox.readers) <= 1, "the cut pipe was dropped"


def test_a_half_refused_call_leaves_the_accepted_count_moving(tmp_path):
    """The third publish call is half refused. Its accepted half is still counted as accepted,
    its refused half as rejected, and every later call is counted too: one refusal does not
    freeze the count (which would hide any later loss)."""
    scenario = Scenario(mode="drain", drain_jobs=500, publish_batch=50,
                        broker_options={"faults": {"refuse_calls": [2]}},
                        **{k: v for k, v in FAST.items() if k not in ("duration_s", "warmup_s")})
    result, _ = run(scenario, out=tmp_path)
    f = result["figures"]
    assert f["rejected"] == 25
    assert (f["accepted"], f["completed"], f["lost"], f["unexpected"]) == (475, 475, 0, 0), f


def test_a_nack_read_after_the_call_is_counted_refused_not_an_error(tmp_path):
    """The third call's jobs are nacked only when the producer next reads its confirms (its final
    flush here), as a quorum queue nacks in-flight publishes while its leader changes. They are
    counted refused, the rest accepted and done, and the producer reports no error."""
    scenario = Scenario(mode="drain", drain_jobs=500, publish_batch=50,
                        broker_options={"faults": {"nack_calls": [2]}},
                        **{k: v for k, v in FAST.items() if k not in ("duration_s", "warmup_s")})
    result, _ = run(scenario, out=tmp_path)
    f = result["figures"]
    assert result["errors"] == [] and result["status"] == "ok", result["errors"]
    assert f["rejected"] == 50
    assert (f["accepted"], f["completed"], f["lost"], f["unexpected"]) == (450, 450, 0, 0), f


def test_a_call_in_doubt_is_counted_in_doubt_with_what_became_of_it(tmp_path):
    """The third call ends in doubt (a reply lost after sending): half its jobs were kept by the
    broker and run, half were not. None of them is called refused or accepted: 50 in doubt, 25
    ran, 25 never ran; nothing lost, nothing unexpected, and the sums add up to every job sent."""
    scenario = Scenario(mode="drain", drain_jobs=500, publish_batch=50,
                        broker_options={"faults": {"doubt_calls": [2]}},
                        **{k: v for k, v in FAST.items() if k not in ("duration_s", "warmup_s")})
    result, _ = run(scenario, out=tmp_path)
    f = result["figures"]
    assert (f["in_doubt"], f["in_doubt_outcome"]) == (50, {"ran": 25, "ran_twice": 0, "never_ran": 25}), f
    assert (f["accepted"], f["rejected"], f["lost"], f["unexpected"], f["refused_ran"]) == (450, 0, 0, 0, 0), f
    assert f["accepted"] + f["rejected"] + f["in_doubt"] == f["sent"] == 500


def test_a_retry_that_vanishes_is_counted_lost(tmp_path):
    """Poison jobs fail three times; the broker loses three of their retries. A job is settled by
    the run that ends its chain, so those three chains show as lost although their first
    attempts ran."""
    scenario = Scenario(mode="drain", drain_jobs=300, poison_share=0.3,
                        broker_options={"faults": {"drop_retry": [0, 5, 9]}},
                        **{k: v for k, v in FAST.items() if k not in ("duration_s", "warmup_s")})
    result, _ = run(scenario, out=tmp_path)
    f = result["figures"]
    assert f["poison_sent"] > 10 and f["lost"] == 3, f
    assert f["completed"] == f["accepted"] - 3


def test_a_run_ends_on_distinct_jobs_settled_not_on_runs_counted(tmp_path):
    """Duplicated runs must not make a run look finished while jobs are still to run."""
    from benchmarks.harness.runner import distinct_settled

    logs = []
    for index, records in enumerate(([(0, 1), (0, 2), (0, 2)], [(0, 2), (0, 3)])):
        path = tmp_path / f"c{index}.seen"
        from benchmarks.harness.metrics import SEEN_RECORD

        path.write_bytes(b"".join(SEEN_RECORD.pack(p, s, 0) for p, s in records))
        logs.append(str(path))
    assert distinct_settled(logs) == 3, "5 runs, 3 distinct jobs"


def test_publish_latency_leaves_out_the_producers_own_pauses(tmp_path):
    """A producer paused by the backlog (closed loop) goes on reading its confirms: their times
    are the broker's, not the end of the pause. Here acceptance is told only when the producer
    idles or flushes, as with windowed confirms; publish latency must stay far under the time
    jobs spend queued, which the pauses follow."""
    scenario = Scenario(mode="closed", profile="statistics_aggregation", duration_s=2.0, warmup_s=0.3,
                        producers=1, consumers=1, concurrency=1, max_backlog=600, service_factor=0.5,
                        broker_options={"faults": {"confirm_on_idle": True}}, drain_timeout_s=20,
                        broker="memory")  # ~2.5 ms a job: a job waits ~1.6 s behind the 600 queued
    result, _ = run(scenario, out=tmp_path)
    lat = result["figures"]["latency_ms"]
    assert result["figures"]["lost"] == 0
    assert lat["publish"].get("count", 0) >= 20, "acceptances were timed inside the window"
    assert lat["publish"]["p99"] < lat["queue_wait"]["p50"] / 10, (lat["publish"], lat["queue_wait"])
