"""Results files: one JSON file per run, with a versioned schema (results_schema.json).

A results file holds the scenario as run, every figure, the encoded latency histograms (so two
runs can be compared or merged later), and the environment. Reports and notebooks read these
files only. Schema history:

  brokerbench.run/1   first version
  brokerbench.run/2   the scenario's durability level and repetition; the durability profile
                      used (level, profile, promise, how its broker was chosen). run/1 files
                      still load (read as durability "" and repetition 0).
  brokerbench.run/3   the in-doubt outcome: ``in_doubt`` (jobs the broker may hold), what became
                      of them (``in_doubt_outcome``: ran, ran twice, never ran) and
                      ``refused_ran`` (refused, yet ran: a defect); ``rejected`` counts distinct
                      refused jobs. Older files load without them.
                      Later run/3 files add, all optional: ``jobs_in_window``; the CPU cost per
                      job (``cpu_per_1000_jobs``, ``jobs_per_broker_cpu_s``, ``utilisation``,
                      ``bound_by``: :mod:`.cpu_cost`, which derives them for older files);
                      ``cpu_s.harness``; ``environment.cpu_pinning``; for a contender's run,
                      ``cpu_s.bridge`` (the harness's bridges to its programs: counted apart,
                      like the harness; ``producers`` and ``consumers`` are then the programs
                      alone; files written before counted the bridges in them).

Durability levels were renamed by what "accepted" promises (memory, second, disk, majority;
:data:`brokers.registry.LEVELS`); the ``durability`` section also carries the level's ``label``
and, on the replication scenario's files, what each node kept (``node_level``,
``node_server``). Files written before keep their level (in-memory, durable, strict): readers
print it as "<name> (old level)".
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..harness.metrics import Recorder, loss_and_duplicates, summary
from .cpu_cost import HARNESS_CPU

SCHEMA_ID = "brokerbench.run/3"
READABLE = ("brokerbench.run/1", "brokerbench.run/2", SCHEMA_ID)


def schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("results_schema.json").read_text())


def validate(result: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if ``result`` does not follow the schema."""
    jsonschema.validate(result, schema())


def figures(recorder: Recorder, *, window_s: float, cpu: dict[str, float | None],
            timeline: dict[str, list[float]], worker_counts: dict[str, int]) -> dict[str, Any]:
    """Every figure of a run (or of one sweep step) from the merged recorder."""
    recorder.flush()
    integrity = loss_and_duplicates(recorder.sent, recorder.seen, recorder.refused_seqs, recorder.doubt_seqs)
    counters = recorder.counters
    in_window_done = counters.get("done_in_window", 0)
    sent_in_window = counters.get("sent_in_window", 0)
    # The harness's own process (pacing, sampling) is measured apart: not a client an
    # application would run, so neither in "clients" nor in jobs per CPU-second.
    client_cpu = [v for k, v in cpu.items() if k not in ("broker", *HARNESS_CPU)]
    counted = [v for k, v in cpu.items() if k not in HARNESS_CPU]
    total_cpu = None if None in counted else round(sum(v for v in counted if v is not None), 3)
    return {
        "window_s": round(window_s, 3),
        "jobs_in_window": in_window_done,                 # finished in the window: what CPU and throughput count
        "sent": counters.get("sent", 0),
        "accepted": integrity["accepted"],
        "completed": integrity["ran"],
        "lost": integrity["lost"],
        "duplicated": integrity["duplicated"],
        "unexpected": integrity["unexpected"],
        "redelivered": counters.get("redelivered", 0),
        "unconfirmed_at_end": counters.get("unconfirmed_at_end", 0),
        "rejected": integrity["refused"],                 # refused: the broker certainly does not hold them
        "refused_ran": integrity["refused_ran"],          # refused, yet ran: the adapter's word was untrue
        "in_doubt": integrity["in_doubt"],                # may be held: the producer could not know
        "in_doubt_outcome": {"ran": integrity["doubt_ran"], "ran_twice": integrity["doubt_twice"],
                             "never_ran": integrity["doubt_never"]},
        "retry_runs": counters.get("retry_runs", 0),      # runs of a job after a failed attempt
        "poison_sent": counters.get("poison_sent", 0),
        "malformed_sent": counters.get("malformed_sent", 0),
        "worker": worker_counts,
        "throughput": {
            "in_per_s": round(sent_in_window / window_s, 1) if window_s else 0.0,
            "out_per_s": round(in_window_done / window_s, 1) if window_s else 0.0,
        },
        "latency_ms": {name: summary(hist) for name, hist in recorder.hists.items()},
        "per_type": {name: summary(hist) for name, hist in sorted(recorder.by_type.items())},
        "cpu_s": {**cpu, "clients": None if None in client_cpu else round(sum(client_cpu), 3)},  # type: ignore[arg-type]
        "jobs_per_cpu_s": round(in_window_done / total_cpu, 1) if total_cpu else None,
        "timeline": timeline,
    }


def histograms(recorder: Recorder) -> dict[str, Any]:
    data = recorder.to_json()
    return {"overall": data["hists"], "per_type": data["by_type"]}


def build(scenario: dict[str, Any], *, status: str, errors: list[str], environment: dict[str, Any],
          measured: dict[str, Any] | None, hist: dict[str, Any] | None, started: datetime,
          steps: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    result = {
        "schema": SCHEMA_ID,
        "name": (scenario.get("label") or f"{scenario['broker']}-{scenario['profile']}-{scenario['mode']}")
        + (f"-r{scenario['repetition']}" if scenario.get("repetition") else ""),
        "created": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "errors": errors,
        "scenario": scenario,
        "environment": environment,
        "figures": measured,
        "histograms": hist,
    }
    if steps is not None:
        result["steps"] = steps
    if extra:
        result.update(extra)
    validate(result)
    return result


def write(result: dict[str, Any], folder: Path) -> Path:
    return write_named(result, folder, result["name"], datetime.fromisoformat(result["created"]))


def write_named(result: dict[str, Any], folder: Path, name: str, when: datetime | None = None) -> Path:
    """Write ``result`` as ``folder/<name>-<YYYYmmdd-HHMMSS>.json`` (``-2``, ``-3``... if taken)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{name}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{name}-{stamp}-{n}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=False))
    return path


def load(path: Path) -> dict[str, Any]:
    result = json.loads(Path(path).read_text())
    if result.get("schema") not in READABLE:
        raise ValueError(f"{path}: schema {result.get('schema')!r}, this brokerbench reads {' and '.join(READABLE)}")
    validate(result)
    return result
