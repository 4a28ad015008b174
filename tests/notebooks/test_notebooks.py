"""The five notebooks are committed with their outputs; what notebook 05's live failover must hold.

The notebooks themselves run top to bottom, live cells on, in the class's order, in
test_dress_rehearsal.py."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

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


def check_live_failovers(out: Path) -> None:
    """Notebook 05's live cell is the small replication scenario: the leader (Redis primary,
    quorum leader) SIGKILLed under load on each replicated broker, with its no-loss profile.
    What the class sees must hold: no accepted job lost, a new leader named, acceptances back,
    the in-doubt count the results file's, no refused job run, and every job sent in one outcome."""
    from benchmarks.results import files as results
    from brokers import registry

    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert {r["broker"] for r in rows} == {k for k in registry.compared_kinds() if registry.get(k).replication}
    for row in rows:
        assert row["lost"] == 0 and row["met"], row["note"]
        assert row["failover_s"] and row["failover_s"] > 0, f"a new leader was named: {row['note']}"
        assert row["unavailable_s"] is not None and row["resumed"], row["note"]
        loaded = results.load(row["results_file"])
        fault, figures = loaded["fault"], loaded["figures"]
        assert fault["failover_s"] == row["failover_s"] and "topology" in fault["topology"]
        assert fault["met"] == row["met"] and fault["expectation"] == row["expectation"]
        assert row["in_doubt"] == figures["in_doubt"] and figures["refused_ran"] == 0, row["note"]
        assert figures["accepted"] + figures["rejected"] + figures["in_doubt"] == figures["sent"], figures
