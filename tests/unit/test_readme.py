"""README's set-up commands and CI must not drift apart."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_COMMAND = ".venv/bin/python -m pytest -q"


def test_ci_runs_the_test_command_readme_gives():
    readme = (ROOT / "README.md").read_text()
    assert f'python3 -m venv .venv && .venv/bin/pip install -q -e ".[all]" && {TEST_COMMAND}' in readme
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == TEST_COMMAND
    assert '.venv/bin/python -m pip install -q -e ".[all]"' in (ROOT / ".ci/run").read_text()


def test_readme_main_job_is_a_real_command():
    from benchmarks.commands.cli import COMMANDS

    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "brokerbench " in line and line.startswith("python3"))
    command = line.split(".venv/bin/brokerbench ")[1].split()[0]
    assert command in COMMANDS
