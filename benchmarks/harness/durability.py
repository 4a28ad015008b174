"""Durability as an axis of every comparison: which broker, with which settings, a run uses.

Levels are named by what "accepted" promises (:data:`brokers.registry.LEVELS`): ``memory``
(acknowledged from memory), ``second`` (written to disk within about a second: Redis only),
``disk`` (acknowledged on disk: the default) and ``majority`` (acknowledged by a replica or a
majority: replicated brokers only, in the replication scenario). Each broker kind names its
profile for each level it can give, so a comparison sets like against like. A key with a
variant (``disk:quorum``) names one kind's other profile at the same promise; a kind without a
profile at a level sits it out and the run says why (:func:`pairing`): a level is never
paired with a weaker or stronger profile to fill the gap.

A profile's adapter options (persistence, confirms, queue type) go into the scenario. Its server
settings (Redis's AOF) must be the broker's own: a found broker that already runs them (read
with :attr:`brokers.registry.Driver.read_settings`) is used as it is; otherwise a private
instance with them is started for the run and stopped after it. A shared broker is never
reconfigured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brokers import registry
from brokers.provision import find
from brokers.urls import redact

from .scenario import Scenario


class DurabilityUnavailable(RuntimeError):
    """The level cannot be run here; the message says why and what to do."""


def describe_profile(profile: registry.DurabilityProfile, how: str, level: str | None = None) -> dict[str, Any]:
    """What a results file records of the durability a run used (its ``durability`` section):
    the level (``level``, else the profile's own) and its label, the profile, its promise and
    settings, and ``how`` its broker was chosen."""
    key = profile.level if level is None else level
    return {"level": key, "label": registry.level_label(key), "profile": profile.name, "promise": profile.promise,
            "server": dict(profile.server), "options": dict(profile.options), "how": how}


@dataclass
class Pairing:
    """Which (broker kind, level) pairs a run places, and which kinds sit a level out.

    :param placed: the pairs to place, in order of first use.
    :param left_out: ``(kind, level, why)`` for each kind with no profile at a level it was
        asked for (RabbitMQ at ``second``): its workloads at that level do not run.
    """

    placed: list[tuple[str, str]] = field(default_factory=list)
    left_out: list[tuple[str, str, str]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per kind left out: which level, and why it has no side there."""
        return [f"{registry.get(kind).label} is not run at durability {level!r} ({registry.level_label(level)}), "
                f"so nothing is paired with it there: {why}" for kind, level, why in self.left_out]


def pairing(pairs: list[tuple[str, str]]) -> Pairing:
    """Sort ``(kind, level)`` pairs into those to place and those a kind sits out. Raises
    :class:`DurabilityUnavailable` for an unknown or old level name (saying what it meant), for a
    level only replicated brokers give (pointing at ``brokerbench scenario replication``), and
    when no pair is left to run."""
    out = Pairing()
    for kind, level in pairs:
        driver = registry.get(kind)
        try:
            wanted = registry.check_level(level)
            if driver.durability:
                driver.at_level(level)
        except registry.LevelUnavailable as exc:
            if wanted.replicated:
                raise DurabilityUnavailable(str(exc)) from exc
            out.left_out.append((kind, level, str(exc)))
            continue
        except ValueError as exc:
            raise DurabilityUnavailable(str(exc)) from exc
        out.placed.append((kind, level))
    if pairs and not out.placed:
        raise DurabilityUnavailable("nothing to run: " + " ".join(out.notes()))
    return out


@dataclass
class Placement:
    """Where and how one broker kind runs at one durability level."""

    kind: str
    level: str
    profile: registry.DurabilityProfile | None  # None: the kind has no profiles (in-process)
    url: str
    instance: Any = None  # the private instance started for it, if any
    how: str = ""          # how the broker was chosen, in words

    @property
    def label(self) -> str:
        """How tables name it: the level's promise and the kind's own words for it."""
        return (f"{self.level}: {registry.level_label(self.level)} ({self.profile.name})" if self.profile
                else "none (one process)")

    def bind(self, workload: Scenario) -> Scenario:
        """``workload`` on this kind at this level (the workload's own adapter options win)."""
        options = {**(self.profile.options if self.profile else {}), **workload.broker_options}
        return workload.on(self.kind).with_(broker_options=options, durability=self.level)

    def describe(self) -> dict[str, Any]:
        """What results files record beside the figures (no secrets: the URL is redacted)."""
        out: dict[str, Any] = {"level": self.level, "url": redact(self.url), "how": self.how}
        if self.profile is not None:
            out.update(describe_profile(self.profile, self.how, self.level))
        if self.instance is not None and getattr(self.instance, "folder", None) is not None:
            out["data_filesystem"] = filesystem_of(str(self.instance.folder))
        return out

    def close(self) -> None:
        if self.instance is not None:
            self.instance.cleanup()
            self.instance = None


def filesystem_of(path: str) -> str | None:
    """The type of the filesystem holding ``path`` (a tmpfs would make fsync meaningless)."""
    best, kind = "", None
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) > 2 and path.startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        return None
    return kind


def place(kind: str, level: str, url: str | None = None) -> Placement:
    """The broker a run of ``kind`` at ``level`` uses: ``url`` or the found one when it runs the
    profile's server settings, else a private instance started with them."""
    driver = registry.get(kind)
    if not driver.durability:
        found = url or find(kind).url
        return Placement(kind, level, None, found, how="in one process: no durability settings")
    try:
        profile = driver.at_level(level)
    except ValueError as exc:  # an unknown or old name, or no profile at the level (said why)
        raise DurabilityUnavailable(str(exc)) from exc
    found = url or find(kind).url
    if not profile.server:
        return Placement(kind, level, profile, found, how="the found broker (the level is adapter options)")
    wanted = {k: str(v) for k, v in profile.server.items()}
    have = driver.read_settings(found, tuple(wanted)) if driver.read_settings else {}
    differing = {k: have.get(k, "?") for k, v in wanted.items() if have.get(k) != v}
    if not differing:
        return Placement(kind, level, profile, found, how="the found broker: it runs these settings")
    said = ", ".join(f"{k}={v}" for k, v in differing.items())
    needs = ", ".join(f"{k}={v}" for k, v in wanted.items())
    if url is not None:
        raise DurabilityUnavailable(
            f"the {driver.label} at {redact(url)} has {said}; durability {level!r} needs {needs}"
            ": leave out --url to let brokerbench start a private one, or choose another --durability")
    cls = driver.server_class()
    if cls is None:
        raise DurabilityUnavailable(f"the found {driver.label} has {said} and brokerbench cannot start one of its own")
    try:
        instance = cls(config=dict(wanted)).start()
    except Exception as exc:  # noqa: BLE001 - say what is missing, plainly
        raise DurabilityUnavailable(f"durability {level!r} needs a {driver.label} with {needs}"
                                    f"; the found one has {said} and a private one did not start: {exc}. Install "
                                    "the server, give --url of a broker that runs these settings (docker-compose.yml's "
                                    "Redis runs the default level's), or choose --durability memory") from exc
    return Placement(kind, level, profile, instance.url, instance,
                     how=f"a private instance (the found broker has {said}; it is never reconfigured)")
