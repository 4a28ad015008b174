"""Results name the code that made them: the last commit outside reports/ (and docs, tests,
notebooks), dirty only when code is, so `brokerbench reference` writing (or a commit of) results
does not change what they name."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.harness.environment import git_commit


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_the_commit_is_the_codes_and_results_never_make_it_dirty(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "old.json").write_text("{}")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "code")
    code = _git(tmp_path, "log", "-1", "--format=%h", "--abbrev=12")
    assert git_commit(tmp_path) == code

    (tmp_path / "reports" / "old.json").unlink()          # a part replaces its results files
    (tmp_path / "reports" / "new.json").write_text("{}")
    assert git_commit(tmp_path) == code, "results being written are not a change of code"
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "results")
    assert git_commit(tmp_path) == code, "a commit of results names the same code"

    for page in ("docs/page.md", "README.md", "tests/test_x.py", "notebooks/make.py"):
        (tmp_path / page).parent.mkdir(exist_ok=True)
        (tmp_path / page).write_text("said\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "pages, tests and notebooks")
    (tmp_path / "docs/page.md").write_text("said again\n")
    assert git_commit(tmp_path) == code, "prose, tests and notebooks are not the code that measures"

    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == code + "-dirty"
    _git(tmp_path, "commit", "-qam", "more code")
    assert git_commit(tmp_path) == _git(tmp_path, "log", "-1", "--format=%h", "--abbrev=12") != code
