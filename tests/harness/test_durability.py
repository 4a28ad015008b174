"""Durability as an axis: each level runs each broker with the profile that gives it, on a
broker that really runs its server settings, and a shared broker is never reconfigured."""

from __future__ import annotations

import pytest

from benchmarks.harness.durability import DurabilityUnavailable, place
from benchmarks.harness.scenario import Scenario
from brokers import registry
from brokers.bullmq_redis.driver import read_settings
from brokers.provision import find


@pytest.mark.parametrize("level", list(registry.DURABILITY_LEVELS))
def test_every_compared_kind_has_a_profile_for_every_level(level):
    for kind in registry.compared_kinds():
        profile = registry.get(kind).at_level(level)
        assert profile.level == level


def test_durable_redis_runs_with_aof_everysec_without_touching_the_found_redis():
    found = find("redis").url
    before = read_settings(found, ("appendonly", "appendfsync"))
    placement = place("redis", "durable")
    try:
        assert read_settings(placement.url, ("appendonly", "appendfsync")) == {"appendonly": "yes",
                                                                                "appendfsync": "everysec"}
        if before.get("appendonly") != "yes":
            assert placement.instance is not None and placement.url != found, "a private Redis with AOF"
        described = placement.describe()
        assert described["level"] == "durable" and described["profile"] == "AOF everysec"
    finally:
        placement.close()
    assert read_settings(found, ("appendonly", "appendfsync")) == before, "the found Redis is unchanged"


def test_levels_that_are_adapter_options_use_the_found_broker_and_bind_the_options():
    placement = place("rabbitmq", "strict")
    assert placement.instance is None
    bound = placement.bind(Scenario(profile="mix", mode="closed", broker_options={"prefetch_multiplier": 2}))
    assert bound.broker == "rabbitmq" and bound.durability == "strict"
    assert bound.broker_options["queue_type"] == "quorum" and bound.broker_options["confirms"] == "windowed"
    assert bound.broker_options["prefetch_multiplier"] == 2, "the workload's own options are kept"


def test_a_given_url_that_does_not_run_the_level_is_refused_with_what_to_do():
    found = find("redis").url
    if read_settings(found, ("appendonly",)).get("appendonly") == "yes":
        pytest.skip("the found Redis runs AOF")  # not the case on CI's shared Redis (no persistence)
    with pytest.raises(DurabilityUnavailable, match="appendonly=no.*leave out --url"):
        place("redis", "durable", url=found)


def test_an_unknown_level_names_the_known_ones():
    with pytest.raises(ValueError, match="in-memory, durable, strict"):
        registry.get("redis").at_level("fast")


def test_a_scenario_files_own_level_wins_over_the_command_lines():
    """``brokerbench run --scenario F``: a scenario that names its durability runs at that level
    (on a broker placed for it); one that does not runs at ``--durability``."""
    from benchmarks.commands.run import needed, plan

    workloads = [Scenario(profile="mix", mode="closed", durability="in-memory", label="durability-in-memory"),
                 Scenario(profile="mix", mode="closed", durability="strict", label="durability-strict"),
                 Scenario(profile="mix", mode="open")]
    pairs = needed(workloads, ["rabbitmq"], "durable")
    assert pairs == [("rabbitmq", "in-memory"), ("rabbitmq", "strict"), ("rabbitmq", "durable")]
    placements = {pair: place(*pair) for pair in pairs}
    try:
        planned = plan(workloads, placements, repeat=2, level="durable")
    finally:
        for where in placements.values():
            where.close()
    assert [(s.durability, s.repetition) for s in planned] == [
        ("in-memory", 1), ("strict", 1), ("durable", 1), ("in-memory", 2), ("strict", 2), ("durable", 2)]
    by_level = {s.durability: s.broker_options for s in planned}
    assert by_level["in-memory"]["persistent"] is False
    assert by_level["strict"]["queue_type"] == "quorum"
    assert by_level["durable"]["persistent"] is True and by_level["durable"].get("queue_type") != "quorum"
