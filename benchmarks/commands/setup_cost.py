"""What it takes to stand each broker up: start-up time of a private node, and the objects a
job queue must declare before its first job (``brokerbench setup-cost``).

Written as ``setup-<time>.json`` (schema ``brokerbench.setup/1``) for the report's answer to
the seed's "BullMQ is simpler to set up".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from brokers.amqp.topology import Topology
from brokers.instances import RabbitMQInstance, RedisInstance

from . import environment

SCHEMA = "brokerbench.setup/1"


def declared_objects(routes: dict[str, str] | None = None) -> dict[str, int]:
    """Exchanges, queues and bindings our RabbitMQ topology declares (delay queues come on use)."""
    topo = Topology("jobs", routes or {"heavy_workflow_execution": "heavy"})
    lanes = len(topo.lanes)
    return {"exchanges": len(topo.all_exchanges()), "queues": lanes + 1,
            "bindings": 1 + 1 + len(topo.routes)}  # dead letters, unrouted -> default, one per route


def start_times(rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"redis": [], "rabbitmq": []}
    for _ in range(rounds):
        for kind, cls in (("redis", RedisInstance), ("rabbitmq", RabbitMQInstance)):
            instance = cls()
            started = time.monotonic()
            instance.start()
            out[kind].append(round(time.monotonic() - started, 3))
            instance.cleanup()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="brokerbench setup-cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/setup"))
    args = parser.parse_args(argv)
    times = start_times(args.rounds)
    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "start_s": {kind: statistics.median(values) for kind, values in times.items()},
        "start_rounds_s": times,
        "declared": {"redis": {"exchanges": 0, "queues": 0, "bindings": 0}, "rabbitmq": declared_objects()},
        "environment": environment.capture(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"setup-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"median start: Redis {result['start_s']['redis']:.2f} s, RabbitMQ {result['start_s']['rabbitmq']:.1f} s; "
          f"RabbitMQ declares {result['declared']['rabbitmq']}; results: {path}")
    return result
