"""The drain benchmark on a tiny profile, so it cannot rot. It checks shape, not speed."""

from __future__ import annotations

import json

from benchmarks.commands import drain


def test_drain_runs_every_contender_and_writes_results(tmp_path):
    result = drain.main(["--jobs", "300", "--rounds", "1", "--concurrency", "10", "--prefetch", "10",
                         "--out", str(tmp_path)])
    files = list(tmp_path.glob("drain-*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["schema"] == drain.SCHEMA
    assert saved["summary"] == result["summary"]
    assert set(saved["rounds"][0]) == set(drain.CONTENDERS)
    for figures in saved["rounds"][0].values():
        assert figures["jobs"] == 300 and figures["seconds"] > 0 and figures["cpu_seconds"] > 0
    assert set(saved["summary"]["ratios"]) == {"redis-ours / bullmq-official", "amqp-ours / pika-plain"}
    env = saved["environment"]
    assert env["machine"]["cores"] and env["packages"]["pika"] and env["packages"]["bullmq"] == "3.4.4"
    assert env["brokers"]["redis"]["version"] and env["brokers"]["rabbitmq"]["version"]
    assert "guest:guest" not in files[0].read_text()
