"""The latency benchmark on a tiny profile, so it cannot rot (shape, not speed); and how it marks
a contender that could not keep the rate, whose figures are then its own backlog."""

from __future__ import annotations

import json

from benchmarks.commands import latency
from benchmarks.results.reference_clients import latency_blocks


def test_latency_runs_every_contender_at_a_rate_all_keep(tmp_path):
    result = latency.main(["--rate", "100", "--seconds", "1", "--rounds", "1", "--width", "10",
                           "--out", str(tmp_path)])
    files = list(tmp_path.glob("latency-*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["schema"] == latency.SCHEMA and saved["summary"] == result["summary"]
    assert set(saved["rounds"][0]) == set(latency.CONTENDERS)
    for name, r in saved["rounds"][0].items():
        assert r["end_to_end_ms"]["count"] == 100, name
        assert r["kept_rate"] and r["sent_per_s"] > 95, (name, r["sent_per_s"], r["worker_finished_late_s"])
    assert saved["summary"]["fell_behind"] == {}
    assert "guest:guest" not in files[0].read_text()


def _round(p50: float, sent: float, late: float, rate: float = 1000.0) -> dict:
    e2e = {"p50": p50, "p99": p50 * 3}
    return {"end_to_end_ms": e2e, "publish_ms": {"p50": 0.1, "p99": 0.3}, "sent_per_s": sent,
            "worker_finished_late_s": late,
            "kept_rate": sent >= latency.KEPT_RATE * rate and late <= latency.KEPT_LATE_S}


def test_a_contender_that_falls_behind_is_named_in_the_summary_and_the_report():
    rounds = [{"amqp-ours": _round(1.0, 1000, 0.01), "pika-plain": _round(1500.0, 800, 3.0)},
              {"amqp-ours": _round(1.1, 1000, 0.02), "pika-plain": _round(0.5, 1000, 0.01)}]
    found = latency.summarise(rounds)
    assert found["fell_behind"] == {"pika-plain": {"sent_per_s": 800, "worker_finished_late_s": 3.0}}
    blocks = latency_blocks({"summary": found, "settings": {"rate": 1000.0, "seconds": 10, "width": 50,
                                                             "payload_bytes": 196, "rounds": 2, "durability": "x"}})
    table = next(b for b in blocks if b.kind == "table")
    kept = {row[0]: row[-1] for row in table.rows}
    assert kept["amqp-ours"] == "yes" and kept["pika-plain"].startswith("no")
    assert "pika-plain could not keep 1,000 jobs/s" in blocks[-1].text
