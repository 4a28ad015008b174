"""The summary table of a comparison: one row per (job type, broker), closed-loop throughput
beside open-loop latency. The console (``brokerbench run``) and the report print the same
columns from the same function."""

from __future__ import annotations

from typing import Any

SUMMARY_HEADER = ["job type", "broker", "max jobs/s", "jobs/CPU-s", "open loop in/s", "p50 ms", "p99 ms",
                  "p99.9 ms", "publish p99 ms", "lost", "dup"]


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (profile, broker): closed-loop throughput beside open-loop latency."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        sc, f = r["scenario"], r["figures"]
        row = rows.setdefault((sc["profile"], sc["broker"]), {"profile": sc["profile"], "broker": sc["broker"]})
        if f is None:
            row["error"] = "; ".join(r["errors"])
            continue
        row["lost"] = row.get("lost", 0) + f["lost"]
        row["duplicated"] = row.get("duplicated", 0) + f["duplicated"]
        if r["errors"]:
            row["error"] = "; ".join(r["errors"])
        if sc["mode"] == "closed":
            row["max_jobs_per_s"] = f["throughput"]["out_per_s"]
            row["jobs_per_cpu_s"] = f["jobs_per_cpu_s"]
        elif sc["mode"] == "open":
            e2e = f["latency_ms"]["end_to_end_intended"]
            row["rate"] = f["throughput"]["in_per_s"]
            row["p50_ms"], row["p99_ms"], row["p999_ms"] = e2e.get("p50"), e2e.get("p99"), e2e.get("p99_9")
            row["publish_p99_ms"] = f["latency_ms"]["publish"].get("p99")
    return list(rows.values())


def fmt(value: Any, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def summary_cells(row: dict[str, Any], broker: str, rate_unit: str = "") -> list[str]:
    """One summary row as text, in SUMMARY_HEADER's order (console table and report alike)."""
    return [row["profile"], broker, fmt(row.get("max_jobs_per_s")), fmt(row.get("jobs_per_cpu_s")),
            fmt(row.get("rate"), "{:,.0f}" + rate_unit), fmt(row.get("p50_ms"), "{:.1f}"),
            fmt(row.get("p99_ms"), "{:.1f}"), fmt(row.get("p999_ms"), "{:.1f}"),
            fmt(row.get("publish_p99_ms"), "{:.2f}"), fmt(row.get("lost")), fmt(row.get("duplicated"))]
