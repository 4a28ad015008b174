"""Every notebook runs top to bottom against live brokers, on the small profile."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_five_notebooks_with_outputs_committed():
    assert [p.name for p in NOTEBOOKS] == ["01_concepts.ipynb", "02_throughput_latency.ipynb",
                                           "03_reliability.ipynb", "04_claims.ipynb", "05_replication.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.get("outputs") is not None for c in code)
        assert sum(1 for c in code if c.outputs) >= len(code) // 2, f"{path.name} is committed with outputs"
        assert not any(o.get("output_type") == "error" for c in code for o in c.outputs), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    monkeypatch.setenv("BROKERBENCH_NOTEBOOK_PROFILE", "small")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    assert os.environ["BROKERBENCH_NOTEBOOK_PROFILE"] == "small"
