"""Notebooks 02, 03 and 05 run their live cells on one switch, BROKERBENCH_NOTEBOOK_LIVE=1 (and
always on the small profile, as CI runs them); no cell overwrites it. Checked on the cells
notebooks/make_notebooks.py writes, without a broker or a kernel."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SWITCH = "BROKERBENCH_NOTEBOOK_LIVE"


def _maker():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "notebooks" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _maker()
LIVE_NOTEBOOKS = ("02_throughput_latency.ipynb", "03_reliability.ipynb", "05_replication.ipynb")


@pytest.mark.parametrize("name", LIVE_NOTEBOOKS)
def test_live_cells_follow_the_switch_and_nothing_overwrites_it(name):
    cells = MAKER.NOTEBOOKS[name]()
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert f'os.environ.get("{SWITCH}") == "1"' in code
    assert "LIVE_WANTED = SMALL or LIVE_ASKED" in code
    assert not re.search(r"^LIVE = (SMALL|True)\b", code, re.M), "a cell overwrites the switch"
    assert SWITCH in text and "LIVE = True" not in text, "the text names the switch, not an edit"


@pytest.mark.parametrize("small, asked, binaries, live, said", [
    (False, False, True, False, "off: start Jupyter with BROKERBENCH_NOTEBOOK_LIVE=1"),
    (False, True, True, True, "on (BROKERBENCH_NOTEBOOK_LIVE=1)"),
    (False, True, False, False, "BROKERBENCH_NOTEBOOK_LIVE=1 is set, but this live cell is skipped"),
    (True, False, True, True, "on (small profile)"),
    (True, False, False, False, "This live cell is skipped"),
])
@pytest.mark.parametrize("maker", [MAKER.reliability, MAKER.replication_nb], ids=["03", "05"])
def test_a_private_live_cell_runs_when_asked_and_says_why_not(maker, small, asked, binaries, live, said,
                                                              monkeypatch, capsys):
    import os

    if asked:
        monkeypatch.setenv(SWITCH, "1")
    else:
        monkeypatch.delenv(SWITCH, raising=False)
    cell = [c.source for c in maker() if c.cell_type == "code" and SWITCH in c.source][-1]
    head = cell.split("\nif LIVE:")[0]   # what decides; the rest starts brokers
    namespace = {"os": os, "SMALL": small, "PRIVATE_OK": binaries,
                 "NO_BINARY": [] if binaries else ["rabbitmq-server"]}
    exec(head, namespace)  # the notebook's own cell, as the kernel runs it
    printed = capsys.readouterr().out
    assert namespace["LIVE"] is live
    assert said in printed
    if not binaries and (small or asked):
        assert "rabbitmq-server" in printed and "Docker" in printed


def test_the_docs_name_the_switch():
    assert SWITCH in MAKER.__doc__
    for page in ("run_sheet.md", "live_class.md"):
        assert SWITCH in (ROOT / "docs" / "teaching" / page).read_text(), page
    assert SWITCH in (ROOT / "README.md").read_text()
