"""One machine, one commit per report: files from two commits, two kernels or a dirty tree are
refused with their groups named, unless allowed, and then the report warns at its top and in
the sections whose files span more than one setting; one clean setting is said plainly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.commands.cli import main
from benchmarks.results import environments, report
from tests.helpers.results_files import CORES, CPU, KERNEL, MEMORY_GIB, environment, write_run


def _comparison(folder: Path, env: dict, seed: int = 0) -> None:
    """A closed and an open run of the mix on Redis, in ``folder``."""
    write_run(folder, mode="closed", env=env, seed=seed)
    write_run(folder, mode="open", n=200, env=env, seed=seed)


def test_two_commits_are_refused_with_each_group_named(tmp_path):
    _comparison(tmp_path / "runs", environment(commit="aaaaaaaaaaaa"))
    _comparison(tmp_path / "later", environment(commit="bbbbbbbbbbbb"), seed=1)
    write_run(tmp_path / "later", mode="open", n=200, env=environment(commit="bbbbbbbbbbbb"), seed=2)
    with pytest.raises(environments.MixedEnvironments) as refused:
        report.build([tmp_path], tmp_path / "out")
    said = str(refused.value)
    assert "commit aaaaaaaaaaaa, clean tree: 2 files (runs/)" in said
    assert "commit bbbbbbbbbbbb, clean tree: 3 files (later/)" in said
    assert environments.ALLOW_OPTION in said and not (tmp_path / "out" / "report.md").exists()
    with pytest.raises(SystemExit, match="2 settings"):
        main(["report", str(tmp_path), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("other", [environment(dirty=True), environment(kernel="Linux 6.9.0-other")],
                         ids=["dirty", "kernel"])
def test_a_dirty_tree_or_a_second_kernel_is_refused(tmp_path, other):
    if other["git_commit"].endswith("-dirty"):  # a dirty tree is refused even alone
        _comparison(tmp_path, other)
    else:
        _comparison(tmp_path, environment())
        write_run(tmp_path, mode="open", n=200, env=other, seed=3)
    with pytest.raises(environments.MixedEnvironments) as refused:
        report.build([tmp_path], tmp_path / "out")
    assert ("dirty tree" if other["git_commit"].endswith("-dirty") else "kernel Linux 6.9.0-other") in \
        str(refused.value)


def test_allowed_the_mix_is_said_at_the_top_and_in_the_section(tmp_path):
    _comparison(tmp_path / "runs", environment(commit="aaaaaaaaaaaa"))
    _comparison(tmp_path / "runs", environment(commit="bbbbbbbbbbbb", dirty=True), seed=1)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out"), environments.ALLOW_OPTION]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    top = text[:text.index("## Environment")]
    assert top.count("Warning: these results files were not measured in one setting (commits differ, dirty trees)")
    for commit, tree in (("aaaaaaaaaaaa", "clean tree"), ("bbbbbbbbbbbb", "dirty tree (uncommitted changes)")):
        assert f"commit {commit}, {tree}: 2 files (runs/)" in top
    section = text[text.index("## The comparison"):text.index("### Where each row comes from")]
    assert "Note: this section's 4 results files span 2 settings (commits differ, dirty trees)" in section
    assert "measured on the machine described here" not in text


def test_one_clean_setting_is_said_plainly_with_its_count(tmp_path):
    _comparison(tmp_path / "runs", environment())
    write_run(tmp_path / "runs", broker="rabbitmq", mode="open", n=200, env=environment(), seed=4)
    files = list(tmp_path.rglob("*.json"))
    machines = {json.loads(f.read_text())["environment"]["machine"]["cpu"] for f in files}
    text = report.build([tmp_path], tmp_path / "out").read_text()
    assert machines == {CPU}
    assert (f"| results files | All {len(files)} results files: one machine ({CPU}, {CORES} cores, {MEMORY_GIB} GiB), "
            f"kernel {KERNEL}, commit 0123456789ab, clean tree. |") in text
    assert "Warning" not in text and "Note: this section" not in text


def test_a_plot_caption_says_when_its_results_span_settings(tmp_path):
    from benchmarks.results.plots import caption

    one, _ = write_run(tmp_path, n=50, env=environment(commit="aaaaaaaaaaaa"))
    two, _ = write_run(tmp_path, n=50, env=environment(commit="bbbbbbbbbbbb"), seed=1)
    assert "MIXED: 2 settings (commits differ)" in caption([one, two])
    assert "MIXED" not in caption([one, one])
