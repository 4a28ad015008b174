"""docker-compose.yml cannot be run here (no Docker engine), so its settings are checked as data."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_both_brokers_are_defined():
    services = load()["services"]
    assert set(services) == {"redis", "rabbitmq"}
    assert services["redis"]["image"].startswith("redis:7")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.")
    assert "management" in services["rabbitmq"]["image"]


def test_redis_runs_noeviction_and_the_default_durability_level():
    """noeviction as BullMQ asks, and the server settings of Redis's profile at the default level,
    so that the default comparison uses this Redis as it is."""
    from brokers import registry

    command = load()["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    assert flag(command, "--maxmemory-policy") == "noeviction"
    wanted = registry.get("redis").at_level(registry.DEFAULT_DURABILITY).server
    assert wanted and {k: flag(command, f"--{k}") for k in wanted} == dict(wanted)


def test_ports_bind_loopback_only_and_health_is_checked():
    services = load()["services"]
    expected = {"redis": {"6379"}, "rabbitmq": {"5672", "15672"}}
    for name, service in services.items():
        ports = service["ports"]
        assert all(p.startswith("127.0.0.1:") for p in ports), ports
        assert {p.split(":")[-1] for p in ports} == expected[name]
        check = service["healthcheck"]
        assert check["test"][0] == "CMD" and check["retries"] >= 3
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_data_lives_in_volumes():
    compose = load()
    assert set(compose["volumes"]) == {"redis-data", "rabbitmq-data"}
    assert compose["services"]["redis"]["volumes"] == ["redis-data:/data"]
    assert compose["services"]["rabbitmq"]["volumes"] == ["rabbitmq-data:/var/lib/rabbitmq"]
