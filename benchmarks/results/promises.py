"""What "accepted" promised in the results files a plot draws: each side's durability level and
profile, read from the files, for the line every plot carries under its title.

A file says it in its ``durability`` section (run/2 files on); an older one, or a fault
scenario's, which has none, is read from the broker settings it recorded
(:meth:`brokers.registry.Driver.recorded_profile`: Redis's AOF and appendfsync, RabbitMQ's
persistent messages, confirms and queue type), and the line says so. A replicated run (the
replication scenario's files) names its replication setting, and what each node kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from brokers import registry

FROM_SETTINGS = "read from the broker settings the files recorded"


@dataclass(frozen=True)
class Kept:
    """One side's durability in one results file.

    :param level: a level key ("disk"); "" for a setting that gives no level (nothing promised to
        the producer); None when the file does not tell.
    :param profile: the durability profile, or the replication setting, by name ("" unknown).
    :param node: replicated runs: what each node kept, in words ("from memory (no persistence)").
    :param from_settings: read from the broker settings the file recorded, not from its
        durability section.
    """

    level: str | None
    profile: str = ""
    node: str = ""
    from_settings: bool = False

    def level_words(self) -> str:
        """The level as tables name it, quoted ("'on disk'"), or that there is none or it is unknown."""
        if self.level is None:
            return "level not recorded"
        return f"'{registry.level_label(self.level)}'" if self.level else "no level"

    def words(self) -> str:
        """"'on disk' (AOF always)"; a replicated run: "WAIT 1 (level not recorded), every node
        'from memory' (no persistence)"."""
        if self.node:
            return f"{self.profile} ({self.level_words()}), every node {self.node}"
        return self.level_words() + (f" ({self.profile})" if self.profile else "")


def _driver(kind: str) -> registry.Driver | None:
    try:
        return registry.get(kind)
    except ValueError:
        return None


def _profile_words(profile: registry.DurabilityProfile) -> str:
    return Kept(profile.level, profile.name).words()


def kept(result: dict[str, Any]) -> Kept:
    """The durability ``result`` ran with (see :class:`Kept`)."""
    kind = result["scenario"]["broker"]
    said = result.get("durability") or {}
    fault = result.get("fault") or {}
    driver = _driver(kind)
    described = ((result.get("environment") or {}).get("brokers") or {}).get(kind) or {}
    recorded = driver.recorded_profile(described) if driver else None
    if "topology" in fault:  # the replication scenario: its setting, and what every node kept
        node = (Kept(said["node_level"]).words() if said.get("node_level")
                else _profile_words(recorded) if recorded else "")
        return Kept(said.get("level") or None, said.get("profile") or fault.get("profile", ""), node,
                    from_settings=not said.get("node_level") and recorded is not None)
    if driver is not None and not driver.durability:
        return Kept("", "in one process: nothing kept")
    profile = said.get("profile") or ""
    if profile:  # its level as recorded: "" for a profile that gives none
        return Kept(said.get("level"), profile)
    level = said.get("level") or result["scenario"].get("durability") or None
    if recorded is not None:  # an older file's level name stays; the profile is its settings'
        return Kept(recorded.level if level is None else level, recorded.name, from_settings=True)
    if level is None and driver is not None and fault.get("profile"):  # a fault run names its profile
        try:
            named = driver.profile(fault["profile"])
            return Kept(named.level, named.name, from_settings=True)
        except ValueError:
            pass
    return Kept(level)


def sides(results: Iterable[dict[str, Any]]) -> dict[str, list[Kept]]:
    """Each broker kind in ``results`` (sorted as the legends are) with the durabilities its files
    ran, each once, weakest level first (:func:`brokers.registry.level_rank`; unknown last)."""
    out: dict[str, list[Kept]] = {}
    for r in results:
        found = out.setdefault(r["scenario"]["broker"], [])
        k = kept(r)
        if k not in found:
            found.append(k)
    return {kind: sorted(ks, key=lambda k: (k.level is None, registry.level_rank(k.level or ""), k.profile))
            for kind, ks in sorted(out.items())}


def _label(kind: str) -> str:
    driver = _driver(kind)
    return driver.label if driver else kind


def line(results: Iterable[dict[str, Any]]) -> str:
    """One line naming what "accepted" meant on each side of a plot, e.g.
    "Durability 'on disk': RabbitMQ persistent + confirms / BullMQ-style Redis AOF always", or,
    when the sides do not share one level, "Durability NOT the same on both sides: ...", or, when
    a side ran several, every one of them; "" for no results."""
    found = sides(results)
    if not found:
        return ""
    every = [k for ks in found.values() for k in ks]
    note = f"; {FROM_SETTINGS}" if any(k.from_settings for k in every) else ""
    if all(len(ks) == 1 for ks in found.values()):
        first = every[0]
        if first.level and not first.node and all(k.level == first.level and not k.node for k in every):
            return (f"Durability {first.level_words()}: "
                    + " / ".join(f"{_label(kind)} {ks[0].profile or '(profile not recorded)'}"
                                 for kind, ks in found.items()) + note)
        head = "Durability NOT the same on both sides: " if len(found) > 1 else "Durability: "
        return head + " / ".join(f"{_label(kind)} {ks[0].words()}" for kind, ks in found.items()) + note
    return ("Durability, several settings: "
            + "; ".join(f"{_label(kind)}: " + ", ".join(k.words() for k in ks) for kind, ks in found.items()) + note)


def nodes(results: Iterable[dict[str, Any]]) -> str:
    """What every node of each side kept, for plots of replicated runs (their bars name the
    settings): "RabbitMQ 'on disk' (persistent + confirms) / BullMQ-style Redis 'from memory' (no
    persistence)"; "" when no file says."""
    out = []
    for kind, ks in sides(results).items():
        said = list(dict.fromkeys(k.node for k in ks if k.node))
        if said:
            out.append(f"{_label(kind)} " + ", ".join(said))
    return " / ".join(out)
