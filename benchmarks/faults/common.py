"""What every fault scenario shares: private brokers, the result row, the summary table.

Every scenario runs on PRIVATE broker instances (own ports, own data folders), never on the
shared ones: they kill, restart and reconfigure them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from brokers.instances import RabbitMQInstance, RedisInstance

from .. import environment, results

Progress = Callable[[dict[str, Any]], None]

REDIS_PROFILES: dict[str, dict[str, str]] = {
    "no persistence": {"appendonly": "no", "save": ""},
    "AOF everysec": {"appendonly": "yes", "appendfsync": "everysec"},
    "AOF always": {"appendonly": "yes", "appendfsync": "always"},
}


@dataclass
class Row:
    """One line of the scenarios table: what was expected, what was measured, whether it held."""

    scenario: str
    broker: str
    profile: str
    lost: int | None
    duplicated: int | None
    recovery_s: float | None
    expectation: str
    met: bool
    note: str = ""
    results_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PrivateBrokers:
    """Private instances for one session of scenarios: started on first use, reused, stopped at
    the end. One Redis per configuration; one RabbitMQ node (it takes seconds to start)."""

    def __init__(self) -> None:
        self._redis: dict[str, RedisInstance] = {}
        self._rabbit: RabbitMQInstance | None = None
        self._extra: list[RabbitMQInstance] = []

    def redis(self, config: dict[str, str], key: str | None = None) -> RedisInstance:
        name = key or json.dumps(config, sort_keys=True)
        instance = self._redis.get(name)
        if instance is None:
            instance = self._redis[name] = RedisInstance(config=dict(config)).start()
        elif instance.pid is None:
            instance.start()
        return instance

    def fresh_redis(self, config: dict[str, str]) -> RedisInstance:
        """A Redis of its own, for a run that must start empty (stopped with the others)."""
        instance = RedisInstance(config=dict(config)).start()
        self._redis[f"fresh-{instance.port}"] = instance
        return instance

    def rabbitmq(self, config: dict[str, str] | None = None) -> RabbitMQInstance:
        if self._rabbit is None:
            self._rabbit = RabbitMQInstance(config=dict(config or {})).start()
        elif self._rabbit.pid is None:
            self._rabbit.start()
        return self._rabbit

    def plain(self, kind: str) -> RedisInstance | RabbitMQInstance:
        """The session's default private broker of ``kind``: Redis without persistence, or the
        RabbitMQ node."""
        return self.redis({}, key="plain") if kind == "redis" else self.rabbitmq()

    def extra_rabbitmq(self, config: dict[str, str]) -> RabbitMQInstance:
        """A second RabbitMQ node of its own (reconfigured by a scenario), stopped with the others."""
        instance = RabbitMQInstance(config=dict(config)).start()
        self._extra.append(instance)
        return instance

    def close(self) -> None:
        for instance in self._extra:
            instance.cleanup()
        self._extra.clear()
        for instance in self._redis.values():
            instance.cleanup()
        self._redis.clear()
        if self._rabbit is not None:
            self._rabbit.cleanup()
            self._rabbit = None


@dataclass
class Session:
    """What a scenario gets: brokers, size, where results go, a progress callback."""

    brokers: PrivateBrokers
    small: bool
    out: Path
    progress: Progress | None = None
    rows: list[Row] = field(default_factory=list)

    def size(self, full: float, small: float) -> float:
        return small if self.small else full


def write_result(session: "Session", scenario: dict[str, Any], described: dict[str, Any], started: datetime,
                 expectation: str, met: bool, **figures: Any) -> str:
    """A results file for a scenario that measures outside the runner (its figures all in the
    fault section); returns its path."""
    result = results.build(scenario, status="ok", errors=[], environment=environment.capture(
        {scenario["broker"]: described}), figures_=None, hist=None, started=started)
    path = results.write(result, session.out)
    attach(result, path, expectation, met, **figures)
    return str(path)


def attach(result: dict[str, Any], path: Path | None, expectation: str, met: bool, **figures: Any) -> None:
    """Add the scenario's own section (its expectation beside what it measured) to a results
    file, validate it, and write it again."""
    result["fault"] = {"expectation": expectation, "met": met, **figures}
    results.validate(result)
    if path is not None:
        path.write_text(json.dumps(result, indent=1))
