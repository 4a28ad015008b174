"""The class, rehearsed: the commands of docs/teaching/run_sheet.md in the order the sheet gives
them, on the small profile, against the brokers CI has.

The sheet is read, not copied: a command added to it, dropped or moved fails
``test_the_sheet_gives_the_commands_this_rehearsal_runs`` until the rehearsal learns it, and the
notebooks run in the order of the sheet's minute table. What each step checks is what the teacher
relies on at that moment: the install names real extras, the quick run ends with a report whose
figures are its files' figures, the live view serves its page and stops what it started, and every
notebook runs top to bottom with the live switch on, as Jupyter is started on the day.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .test_notebooks import check_live_failovers

ROOT = Path(__file__).resolve().parents[2]
SHEET = ROOT / "docs" / "teaching" / "run_sheet.md"
BIN = Path(sys.executable).parent

# What the sheet asks a teacher to type, in its order (whitespace as one space).
COMMANDS = (
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[all,jupyter]"',
    ".venv/bin/brokerbench run",
    ".venv/bin/python -m pytest -q tests/notebooks",
    ".venv/bin/brokerbench live",
    "BROKERBENCH_NOTEBOOK_LIVE=1 .venv/bin/jupyter lab notebooks/",
)


def sheet_commands(text: str) -> list[str]:
    """Every code span of the sheet that runs something of the project's own venv, in order."""
    spans = (" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text))
    return [s for s in spans if ".venv/bin/" in s]


def sheet_notebooks(text: str) -> list[str]:
    """The notebooks the minute table opens, in the order of the class."""
    table = [line for line in text.splitlines() if line.startswith("| ") and "-" in line.split("|")[1]]
    seen = re.findall(r"Notebook (0\d)", "\n".join(table))
    return list(dict.fromkeys(seen))


def test_the_sheet_gives_the_commands_this_rehearsal_runs():
    assert tuple(sheet_commands(SHEET.read_text())) == COMMANDS


def test_step_1_install_names_extras_that_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = re.search(r'\.\[([a-z,]+)\]', COMMANDS[0]).group(1).split(",")
    assert set(named) <= set(extras), f"the sheet installs {named}; pyproject has {sorted(extras)}"
    assert any(dep.startswith("jupyterlab") for dep in extras["jupyter"]), "the sheet's Jupyter front end"
    assert (BIN / "brokerbench").exists(), "the install gives the brokerbench command the sheet runs next"


def test_step_2_the_quick_run_ends_with_a_report_of_its_own_counts(tmp_path):
    """``brokerbench run`` as the sheet gives it, shortened (one job type mix, closed loop, 1 s, one
    repetition): it says it is a quick look, writes its report, and the report's counts are the
    results files' figures."""
    from benchmarks.results import files as results

    out = tmp_path / "run"
    done = subprocess.run([str(BIN / "brokerbench"), "run", "--profile", "mix", "--mode", "closed",
                           "--duration-s", "1", "--warmup-s", "0.5", "--repeat", "1", "--quiet", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "A quick look, not the reference" in done.stdout
    assert (out / "report.html").exists()
    report = (out / "report.md").read_text()
    files = sorted(out.glob("*.json"))
    assert len(files) == 2, [f.name for f in files]   # one run per compared broker
    for path in files:
        figures = results.load(path)["figures"]
        assert figures["accepted"] + figures["rejected"] + figures["in_doubt"] == figures["sent"], figures
        assert figures["lost"] == 0 and figures["duplicated"] == 0, (path.name, figures)
        rate = f"{figures['throughput']['out_per_s']:,.0f}"
        assert f"| {rate}" in report, f"{path.name}: {rate} jobs/s, not in the report's table"


def test_step_3_the_notebook_test_is_this_folder():
    """The sheet's third command runs tests/notebooks: this rehearsal, and the committed outputs."""
    here = Path(__file__).resolve().parent
    assert COMMANDS[2].endswith("tests/notebooks") and here == ROOT / "tests" / "notebooks"
    assert (here / "test_notebooks.py").exists()


def test_step_4_the_live_view_serves_its_page_and_stops_what_it_started():
    """``brokerbench live`` (port 0 instead of 8765, which may be taken): it prints the teacher's
    link, the page answers on it, and Ctrl-C stops it cleanly."""
    proc = subprocess.Popen([str(BIN / "brokerbench"), "live", "--port", "0"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    watchdog = threading.Timer(300, proc.kill)   # a start that hangs fails the test, not CI's clock
    watchdog.start()
    try:
        url = None
        for line in proc.stdout:   # type: ignore[union-attr]
            lines.append(line)
            found = re.search(r"open (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "".join(lines)
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
            assert "<html" in page.read().decode().lower()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        lines.append(rest or "")
        watchdog.cancel()
    assert proc.returncode == 0, "".join(lines)[-3000:]
    assert "brokerbench live: stopped" in "".join(lines)


def test_step_5_the_reference_report_the_class_opens_is_committed():
    assert (ROOT / "reports" / "reference" / "report.html").exists()
    assert (ROOT / "reports" / "reference" / "report.md").exists()


@pytest.mark.parametrize("number", sheet_notebooks(SHEET.read_text()))
def test_step_6_the_notebooks_in_class_order_with_the_live_switch_on(number, monkeypatch, tmp_path):
    """Jupyter as the sheet starts it (BROKERBENCH_NOTEBOOK_LIVE=1), on the small profile, each
    notebook top to bottom; notebook 05's live failover must hold what the class is told."""
    path = next((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
    monkeypatch.setenv("BROKERBENCH_NOTEBOOK_PROFILE", "small")
    monkeypatch.setenv("BROKERBENCH_NOTEBOOK_LIVE", "1")
    monkeypatch.setenv("BROKERBENCH_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors[:1]
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "live cells: off" not in printed, "the switch is on: no live cell may say it is off"
    if number == "05":
        check_live_failovers(tmp_path)


def test_the_class_order_covers_every_notebook():
    names = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(sheet_notebooks(SHEET.read_text())) == names
