"""The enqueue benchmark on a tiny profile, so it cannot rot. It checks shape and that every
job sent is in its queue afterwards, not speed; and that the report shows its table."""

from __future__ import annotations

import json

from benchmarks.commands import enqueue
from benchmarks.results import report


def test_enqueue_runs_every_contender_counts_what_arrived_and_reports_it(tmp_path):
    result = enqueue.main(["--jobs", "300", "--batch", "100", "--rounds", "1", "--out", str(tmp_path / "r")])
    files = list((tmp_path / "r").glob("enqueue-*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["schema"] == enqueue.SCHEMA and saved["summary"] == result["summary"]
    assert set(saved["rounds"][0]) == set(enqueue.CONTENDERS)
    for name, figures in saved["rounds"][0].items():
        assert figures["sent"] == 300 + enqueue.WARMUP
        assert figures["stored"] == figures["sent"], f"{name} lost jobs"
        assert figures["jobs_per_s"] > 0
    assert saved["summary"]["all_stored"] is True
    assert set(saved["summary"]["ratios"]) == set(enqueue.PAIRS)
    assert "guest:guest" not in files[0].read_text()

    # the files name this checkout's commit, dirty while a change is being made: allowed, said
    report.main([str(tmp_path / "r"), "--out", str(tmp_path / "report"), "--allow-mixed"])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "enqueue benchmark" in text
    for name in enqueue.CONTENDERS:
        assert f"| {name} |" in text
