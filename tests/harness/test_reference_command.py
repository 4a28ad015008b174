"""``brokerbench reference``: one command makes every folder the reference report reads, at
reference length, records the machine and commit of each part, resumes, and refuses a dirty tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.commands import reference
from benchmarks.harness.suite import REFERENCE_CLOSED_S, REFERENCE_OPEN_S, reference_workloads, scaling_workloads

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "reports" / "reference" / "results"


def test_every_folder_the_committed_reference_holds_has_a_part_that_makes_it():
    folders = {p.name for p in COMMITTED.iterdir() if p.is_dir()}
    assert folders, "the committed reference has results folders"
    assert folders <= {p.name for p in reference.PARTS} | set(reference.RETIRED_PARTS)
    assert not set(reference.RETIRED_PARTS) & {p.name for p in reference.PARTS}


def test_reference_cells_are_long_enough_and_repeated():
    workloads = reference_workloads() + scaling_workloads()
    assert {w.profile for w in reference_workloads()} == {"mix", "heavy_workflow_execution",
                                                          "user_variables_update", "statistics_aggregation"}
    for w in workloads:
        assert w.duration_s >= (REFERENCE_CLOSED_S if w.mode == "closed" else REFERENCE_OPEN_S), w
        assert w.warmup_s > 0
    assert reference.Options().repeat >= 3
    assert reference.build_parser().parse_args([]).repeat >= 3


def test_the_plan_says_each_part_and_the_whole_time(capsys):
    reference.main(["--list", "--skip", "durability", "--out", "/nonexistent/never-written"])
    out = capsys.readouterr().out
    for p in reference.PARTS:
        if p.name != "durability":
            assert p.name in out
    assert "in all" in out and "ends about" in out
    assert not Path("/nonexistent/never-written").exists()


def test_an_unknown_part_is_an_error():
    with pytest.raises(ValueError, match="unknown part"):
        reference.chosen_parts(["headline"], [])


def test_a_dirty_tree_is_refused(monkeypatch, tmp_path):
    here = {**reference.where_we_are(), "git_commit": "abc123-dirty"}
    monkeypatch.setattr(reference, "where_we_are", lambda: here)
    with pytest.raises(SystemExit, match="uncommitted"):
        reference.main(["--out", str(tmp_path), "--only", "runs", "--broker", "memory"])
    assert not (tmp_path / "results").exists()


def _short(tmp_path: Path, *extra: str) -> dict:
    return reference.main(["--out", str(tmp_path), "--only", "sweep", "--only", "scaling", "--broker", "memory",
                           "--scale", "0.03", "--repeat", "1", "--allow-dirty", "--no-report", *extra])


def test_parts_write_their_folders_and_a_manifest_and_resume_skips_what_is_done(tmp_path, monkeypatch):
    here = {**reference.where_we_are(), "git_commit": "feedbeef"}
    monkeypatch.setattr(reference, "where_we_are", lambda: here)
    older = tmp_path / "results" / "drain" / "drain-from-an-older-reference.json"  # a retired part's file
    older.parent.mkdir(parents=True)
    older.write_text("{}")
    (tmp_path / reference.MANIFEST).write_text(json.dumps({"parts": {"drain": {"status": "done"}}}))
    manifest = _short(tmp_path)
    assert not older.parent.exists() and "drain" not in manifest["parts"], "a retired part's files are removed"
    runs = sorted((tmp_path / "results" / "sweep").glob("*.json"))
    scaling = sorted((tmp_path / "results" / "scaling").glob("*.json"))
    assert len(runs) == 1 and len(scaling) == len(reference.scaling_workloads())
    on_disk = json.loads((tmp_path / reference.MANIFEST).read_text())
    assert on_disk == manifest
    for name in ("sweep", "scaling"):
        assert on_disk["parts"][name]["status"] == "done"
        assert on_disk["parts"][name]["where"]["git_commit"] == "feedbeef"
        assert on_disk["parts"][name]["seconds"] > 0
    for path in runs:
        assert json.loads(path.read_text())["scenario"]["broker"] == "memory"

    stamps = {p: p.stat().st_mtime_ns for p in runs + scaling}
    _short(tmp_path, "--resume")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "resumed parts are kept as they are"

    # at another commit, --resume runs the part again, into an emptied folder
    monkeypatch.setattr(reference, "where_we_are", lambda: {**here, "git_commit": "0ddba11"})
    stray = tmp_path / "results" / "sweep" / "stray-from-an-older-commit.json"
    stray.write_text("{}")
    _short(tmp_path, "--resume")
    assert not stray.exists()
    again = json.loads((tmp_path / reference.MANIFEST).read_text())
    assert again["parts"]["sweep"]["where"]["git_commit"] == "0ddba11"
    assert len(list((tmp_path / "results" / "sweep").glob("*.json"))) == 1


def test_the_default_run_says_it_is_a_quick_look(capsys, tmp_path):
    from benchmarks.commands import run

    run.main(["--broker", "memory", "--repeat", "1", "--quiet", "--no-report", "--out", str(tmp_path),
              "--profile", "mix", "--mode", "closed", "--duration-s", "0.3", "--warmup-s", "0.1"])
    assert "quick look, not the reference" in capsys.readouterr().out.replace("\n", " ")
