"""``brokerbench compare FILE...``: results files side by side (a folder means every file in it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import files as results


def rows(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        r = results.load(path)
        sc, f = r["scenario"], r["figures"] or {}
        lat = f.get("latency_ms", {})
        e2e = lat.get("end_to_end_intended" if sc["mode"] in ("open", "sweep") else "end_to_end", {})
        out.append({
            "file": path.name, "broker": sc["broker"], "profile": sc["profile"], "mode": sc["mode"],
            "rate": sc["rate"] if sc["mode"] in ("open", "sweep") else None, "status": r["status"],
            "out_per_s": f.get("throughput", {}).get("out_per_s"), "p50": e2e.get("p50"), "p99": e2e.get("p99"),
            "p99_9": e2e.get("p99_9"), "publish_p99": lat.get("publish", {}).get("p99"),
            "lost": f.get("lost"), "duplicated": f.get("duplicated"), "jobs_per_cpu_s": f.get("jobs_per_cpu_s"),
            "max_sustainable_rate": r.get("max_sustainable_rate"), "created": r["created"],
        })
    return out


def expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return [f for f in files if f.name != "summary.json"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="brokerbench compare", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    table_rows = rows(expand(args.paths))
    table = Table(title="brokerbench runs")
    columns = ["broker", "profile", "mode", "rate", "status", "out_per_s", "p50", "p99", "p99_9", "publish_p99",
               "lost", "duplicated", "jobs_per_cpu_s", "max_sustainable_rate", "created"]
    for c in columns:
        table.add_column(c.replace("_", " "))
    for row in table_rows:
        table.add_row(*("-" if row[c] is None else f"{row[c]:,.1f}" if isinstance(row[c], float) else str(row[c])
                        for c in columns))
    Console().print(table)
    return table_rows
