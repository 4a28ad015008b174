"""Durability as an axis: levels named by what "accepted" promises, each broker running the
profile that gives the level on a broker that really runs its server settings, a broker with no
profile at a level sitting it out (and the run saying so), old level names refused with what
they meant, and a shared broker never reconfigured."""

from __future__ import annotations

import pytest

from benchmarks.harness.durability import DurabilityUnavailable, Placement, pairing, place
from benchmarks.harness.scenario import Scenario
from brokers import registry
from brokers.bullmq_redis.driver import read_settings
from brokers.provision import find

# (kind, level) -> the profile that gives it, or the words of the reason it has none.
LEVEL_TABLE = {
    ("redis", "memory"): "no persistence",
    ("redis", "second"): "AOF everysec",
    ("redis", "disk"): "AOF always",
    ("redis", "disk:quorum"): None,
    ("redis", "majority"): None,
    ("rabbitmq", "memory"): "transient messages",
    ("rabbitmq", "second"): None,
    ("rabbitmq", "disk"): "persistent + confirms",
    ("rabbitmq", "disk:quorum"): "quorum + confirms",
    ("rabbitmq", "majority"): None,
}
WHY_NONE = {
    ("redis", "disk:quorum"): "no 'quorum' variant.*AOF always",
    ("redis", "majority"): "another node.*brokerbench scenario replication",
    ("rabbitmq", "second"): "confirmed only after its fsync",
    ("rabbitmq", "majority"): "another node.*brokerbench scenario replication",
}


def test_the_level_keys_are_the_four_promises_and_the_registered_variants():
    assert list(registry.LEVELS) == ["memory", "second", "disk", "majority"]
    assert registry.level_keys() == ["memory", "second", "disk", "majority", "disk:quorum"]
    assert [level.replicated for level in registry.LEVELS.values()] == [False, False, False, True]
    for level in registry.LEVELS.values():
        assert level.label and level.promise.startswith("accepted means")


@pytest.mark.parametrize("kind, level", sorted(LEVEL_TABLE))
def test_each_kind_names_its_profile_at_each_level_or_says_why_it_has_none(kind, level):
    driver = registry.get(kind)
    expected = LEVEL_TABLE[(kind, level)]
    if expected is None:
        with pytest.raises(registry.LevelUnavailable, match=WHY_NONE[(kind, level)]):
            driver.at_level(level)
        return
    profile = driver.at_level(level)
    assert profile.name == expected and profile.level == level and profile.promise


def test_what_each_profile_sets_matches_its_promise():
    redis, rabbitmq = registry.get("redis"), registry.get("rabbitmq")
    assert redis.at_level("memory").server["appendonly"] == "no"
    assert dict(redis.at_level("second").server) == {"appendonly": "yes", "appendfsync": "everysec"}
    assert dict(redis.at_level("disk").server) == {"appendonly": "yes", "appendfsync": "always"}
    assert rabbitmq.at_level("memory").options["persistent"] is False
    on_disk = rabbitmq.at_level("disk").options
    assert on_disk["persistent"] is True and on_disk["confirms"] != "off" and on_disk.get("queue_type") != "quorum"
    quorum = rabbitmq.at_level("disk:quorum").options
    assert quorum["queue_type"] == "quorum" and quorum["confirms"] != "off"
    assert not redis.at_level("second").no_loss, "everysec replies before its fsync"


def test_the_default_is_disk_on_both_and_both_promise_no_loss_of_acknowledged_jobs():
    assert registry.DEFAULT_DURABILITY == "disk"
    assert registry.LEVELS["disk"].label == "on disk"
    for kind in registry.compared_kinds():
        assert registry.get(kind).at_level(registry.DEFAULT_DURABILITY).no_loss, kind


def test_the_replicated_profiles_and_their_one_node_baselines_name_their_levels():
    """Redis WAIT 1 and RabbitMQ's 3-replica quorum queue are the majority level; every one-node
    baseline of the cost rows is on disk, and every Redis node of the group fsyncs before it
    replies (as each RabbitMQ node fsyncs its log)."""
    redis, rabbitmq = registry.get("redis").replication, registry.get("rabbitmq").replication
    assert {p.name: p.level for p in redis.profiles} == {"async replication (BullMQ's way)": "disk",
                                                         "WAIT 1": "majority"}
    assert {p.level for p in rabbitmq.profiles} == {"majority"}
    for replication in (redis, rabbitmq):
        assert all(p.no_loss for p in replication.profiles if p.level == "majority")
        assert {registry.split_level(p.level)[0] for p in replication.single_node} == {"disk"}
    aof_always = {"appendonly": "yes", "appendfsync": "always"}
    assert dict(redis.server) == aof_always
    assert [dict(p.server) for p in redis.single_node] == [aof_always]
    group = redis.new_cluster()   # not started: the settings it would give every data node
    try:
        assert {k: group.config[k] for k in aof_always} == aof_always
    finally:
        group.cleanup()


@pytest.mark.parametrize("old", list(registry.OLD_LEVELS))
def test_old_level_names_are_refused_with_what_they_meant_and_the_new_names(old, capsys):
    from benchmarks.commands.run import build_parser

    for refuse in (registry.check_level, lambda key: Scenario(durability=key),
                   lambda key: registry.get("redis").at_level(key)):
        with pytest.raises(ValueError) as caught:
            refuse(old)
        said = str(caught.value)
        assert f"{old!r} is an old level name" in said
        assert all(key in said for key in registry.LEVELS), said
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--durability", old])
    assert "old level name" in capsys.readouterr().err
    if old == "durable":
        assert "not one promise" in registry.OLD_LEVELS[old] and "everysec" in registry.OLD_LEVELS[old]


def test_tables_print_new_levels_by_their_promise_and_old_ones_as_old():
    assert registry.level_label("disk") == "on disk"
    assert registry.level_label("disk:quorum") == "on disk (quorum)"
    assert registry.level_label("durable") == "durable (old level)"
    assert registry.level_label("") == "-"


def _placed(kind: str, level: str) -> Placement:
    """A placement on a URL nothing listens to: planning needs no broker."""
    return Placement(kind, level, registry.get(kind).at_level(level), f"{kind}://127.0.0.1:9/", how="test")


def test_a_second_run_plans_redis_only_and_says_rabbitmq_is_not_paired():
    from benchmarks.commands.run import needed, plan
    from benchmarks.harness.suite import default_workloads

    workloads = default_workloads()
    paired = pairing(needed(workloads, ["redis", "rabbitmq"], "second"))
    assert paired.placed == [("redis", "second")]
    assert [(kind, level) for kind, level, _ in paired.left_out] == [("rabbitmq", "second")]
    [note] = paired.notes()
    assert "RabbitMQ is not run at durability 'second'" in note and "nothing is paired" in note
    assert "confirmed only after its fsync" in note
    planned = plan(workloads, {pair: _placed(*pair) for pair in paired.placed}, repeat=1, level="second")
    assert planned and {(s.broker, s.durability) for s in planned} == {("redis", "second")}
    assert len(planned) == len(workloads)


def test_a_level_no_broker_gives_on_its_own_is_an_error_pointing_at_what_gives_it():
    from benchmarks.commands.run import needed

    with pytest.raises(DurabilityUnavailable, match="brokerbench scenario replication"):
        pairing(needed([Scenario()], ["redis", "rabbitmq"], "majority"))
    with pytest.raises(DurabilityUnavailable, match="nothing to run.*RabbitMQ.*'second'"):
        pairing(needed([Scenario()], ["rabbitmq"], "second"))
    with pytest.raises(DurabilityUnavailable, match="brokerbench scenario replication"):
        place("rabbitmq", "majority")


@pytest.mark.parametrize("level, fsync", [("second", "everysec"), ("disk", "always")])
def test_redis_runs_the_levels_aof_without_touching_the_found_redis(level, fsync):
    found = find("redis").url
    before = read_settings(found, ("appendonly", "appendfsync"))
    placement = place("redis", level)
    try:
        assert read_settings(placement.url, ("appendonly", "appendfsync")) == {"appendonly": "yes",
                                                                                "appendfsync": fsync}
        if before != {"appendonly": "yes", "appendfsync": fsync}:
            assert placement.instance is not None and placement.url != found, "a private Redis with AOF"
        described = placement.describe()
        assert described["level"] == level and described["profile"] == f"AOF {fsync}"
        assert described["label"] == registry.level_label(level)
    finally:
        placement.close()
    assert read_settings(found, ("appendonly", "appendfsync")) == before, "the found Redis is unchanged"


def test_levels_that_are_adapter_options_use_the_found_broker_and_bind_the_options():
    placement = place("rabbitmq", "disk:quorum")
    assert placement.instance is None
    bound = placement.bind(Scenario(profile="mix", mode="closed", broker_options={"prefetch_multiplier": 2}))
    assert bound.broker == "rabbitmq" and bound.durability == "disk:quorum"
    assert bound.broker_options["queue_type"] == "quorum" and bound.broker_options["confirms"] == "windowed"
    assert bound.broker_options["prefetch_multiplier"] == 2, "the workload's own options are kept"


def test_a_given_url_that_does_not_run_the_level_is_refused_with_what_to_do():
    found = find("redis").url
    if read_settings(found, ("appendonly",)).get("appendonly") == "yes":
        pytest.skip("the found Redis runs AOF")  # not the case on CI's shared Redis (no persistence)
    with pytest.raises(DurabilityUnavailable, match="appendonly=no.*leave out --url"):
        place("redis", "disk", url=found)


def test_an_unknown_level_names_the_known_ones():
    with pytest.raises(ValueError, match="memory, second, disk, majority, disk:quorum"):
        registry.get("redis").at_level("fast")


def test_a_scenario_files_own_level_wins_over_the_command_lines():
    """``brokerbench run --scenario F``: a scenario that names its durability runs at that level
    (on a broker placed for it); one that does not runs at ``--durability``."""
    from benchmarks.commands.run import needed, plan

    workloads = [Scenario(profile="mix", mode="closed", durability="memory", label="durability-memory"),
                 Scenario(profile="mix", mode="closed", durability="disk:quorum", label="durability-disk-quorum"),
                 Scenario(profile="mix", mode="open")]
    pairs = needed(workloads, ["rabbitmq"], "disk")
    assert pairs == [("rabbitmq", "memory"), ("rabbitmq", "disk:quorum"), ("rabbitmq", "disk")]
    assert pairing(pairs).placed == pairs
    planned = plan(workloads, {pair: _placed(*pair) for pair in pairs}, repeat=2, level="disk")
    assert [(s.durability, s.repetition) for s in planned] == [
        ("memory", 1), ("disk:quorum", 1), ("disk", 1), ("memory", 2), ("disk:quorum", 2), ("disk", 2)]
    by_level = {s.durability: s.broker_options for s in planned}
    assert by_level["memory"]["persistent"] is False
    assert by_level["disk:quorum"]["queue_type"] == "quorum"
    assert by_level["disk"]["persistent"] is True and by_level["disk"].get("queue_type") != "quorum"


def test_the_durability_scenario_file_runs_each_level_once_per_broker_that_gives_it():
    """scenarios/durability.toml: memory and disk on both, second on Redis alone, the one-node
    quorum queue on RabbitMQ alone (Redis sits those out, saying why)."""
    from pathlib import Path

    from benchmarks.commands.run import needed
    from benchmarks.harness.scenario import load_scenarios

    workloads = load_scenarios(Path(__file__).resolve().parents[2] / "scenarios" / "durability.toml")
    paired = pairing(needed(workloads, ["redis", "rabbitmq"], registry.DEFAULT_DURABILITY))
    assert paired.placed == [("redis", "memory"), ("rabbitmq", "memory"), ("redis", "second"), ("redis", "disk"),
                             ("rabbitmq", "disk"), ("rabbitmq", "disk:quorum")]
    assert [(kind, level) for kind, level, _ in paired.left_out] == [("rabbitmq", "second"), ("redis", "disk:quorum")]


def test_replication_results_files_name_the_level_and_what_each_node_kept():
    """The replication scenario's durability section: a replicated setting's own level beside
    what each of its nodes keeps, and a one-node baseline at that same per-node level."""
    from benchmarks.faults.replication import _durability

    replication = registry.get("redis").replication
    wait = next(p for p in replication.profiles if p.options.get("wait_replicas"))
    copies = _durability(wait, replication, "Redis primary + 2 replicas, 3 Sentinels")
    one = _durability(replication.single_node[0], replication)
    assert (copies["level"], copies["label"], copies["node_level"]) == ("majority", "on a majority", "disk")
    assert copies["node_server"] == {"appendonly": "yes", "appendfsync": "always"} == one["node_server"]
    assert (one["level"], one["node_level"], one["how"]) == ("disk", "disk", "private: one node")
