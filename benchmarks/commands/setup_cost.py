"""What it takes to stand each broker up: start-up time of a private node, and the objects a
job queue must declare before its first job (``brokerbench setup-cost``).

Written as ``setup-<time>.json`` (schema ``brokerbench.setup/1``) for the report's answer to
the seed's "BullMQ is simpler to set up".
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from brokers import registry

from ..harness import environment
from ..results import files as results_files

SCHEMA = "brokerbench.setup/1"


def start_times(rounds: int, kinds: list[str]) -> dict[str, list[float]]:
    """Seconds from starting a private instance of each kind until it answers, per round."""
    out: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            server = registry.get(kind).server_class()
            assert server is not None
            instance = server()
            started = time.monotonic()
            instance.start()
            out[kind].append(round(time.monotonic() - started, 3))
            instance.cleanup()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="brokerbench setup-cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per broker (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("reports/setup"),
                        help="folder for the results (default %(default)s)")
    args = parser.parse_args(argv)
    kinds = [d.kind for d in registry.drivers() if d.compared and d.can_crash]
    times = start_times(args.rounds, kinds)
    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "start_s": {kind: statistics.median(values) for kind, values in times.items()},
        "start_rounds_s": times,
        "declared": {kind: registry.get(kind).declared_objects() for kind in kinds},
        "environment": environment.capture(),
    }
    path = results_files.write_named(result, args.out, "setup")
    for kind in kinds:
        print(f"{registry.get(kind).label}: median start {result['start_s'][kind]:.2f} s; "
              f"declares {result['declared'][kind]} before its first job")
    print(f"results: {path}")
    return result
