"""Where the results files of one report were measured: one machine, one kernel, one commit?

Every results file carries the environment it was measured in (machine.cpu, cores, memory,
os with the kernel release, git_commit with "-dirty" for a tree with uncommitted changes). A
report must not set numbers from two machines, kernels or commits side by side as if they were
one run, nor present numbers from a dirty tree as those of a commit. :func:`groups` sorts the
files by that setting; :func:`check` refuses a mix (more than one group, or any dirty tree)
unless it is allowed, and the report then says so at its top and in every section whose files
span more than one group (:func:`warning`, :func:`section_note`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from . import sources

ALLOW_OPTION = "--allow-mixed"


@dataclass(frozen=True)
class Setting:
    """What a results file was measured on; None where the file does not say."""

    cpu: str | None
    cores: int | None
    memory_gib: float | None
    kernel: str | None
    commit: str | None
    dirty: bool | None

    @classmethod
    def of(cls, result: dict[str, Any]) -> "Setting":
        env = result.get("environment") or {}
        machine = env.get("machine") or {}
        said = env.get("git_commit")
        return cls(machine.get("cpu"), machine.get("cores"), machine.get("memory_gib"), machine.get("os"),
                   said.removesuffix("-dirty") if said else None, said.endswith("-dirty") if said else None)

    @property
    def recorded(self) -> bool:
        return any(v is not None for v in (self.cpu, self.cores, self.kernel, self.commit))

    def machine_words(self) -> str:
        return f"{self.cpu or '?'}, {self.cores or '?'} cores, {self.memory_gib or '?'} GiB"

    def tree_words(self) -> str:
        return "tree unknown" if self.dirty is None else "dirty tree (uncommitted changes)" if self.dirty \
            else "clean tree"

    def words(self) -> str:
        if not self.recorded:
            return "environment not recorded"
        return (f"{self.machine_words()}, kernel {self.kernel or '?'}, commit {self.commit or '?'}, "
                f"{self.tree_words()}")


@dataclass
class Group:
    """The results files measured in one setting."""

    setting: Setting
    files: list[str] = field(default_factory=list)

    def folders(self) -> list[str]:
        return sorted({name.rpartition("/")[0] or "." for name in self.files})

    def words(self) -> str:
        n = len(self.files)
        return (f"{self.setting.words()}: {n} file{'s' if n != 1 else ''} "
                f"({', '.join(f + '/' if f != '.' else 'top folder' for f in self.folders())})")


def groups(results: Iterable[dict[str, Any]]) -> list[Group]:
    """The results files by setting, the largest group first (files that name no environment,
    such as a scenario's summary table, are left out: their rows' own results files count)."""
    found: dict[Setting, Group] = {}
    for r in results:
        if not isinstance(r, dict) or "schema" not in r:
            continue
        setting = Setting.of(r)
        found.setdefault(setting, Group(setting)).files.append(sources.of(r) or r.get("name", "?"))
    return sorted(found.values(), key=lambda g: (-len(g.files), g.setting.words()))


def mixed(found: list[Group]) -> bool:
    """More than one setting, or a dirty (or unknown) tree, or a file with no environment."""
    return len(found) > 1 or any(g.setting.dirty is not False or not g.setting.recorded for g in found)


class MixedEnvironments(ValueError):
    """The results files of one report were not measured in one clean setting."""

    def __init__(self, found: list[Group]) -> None:
        self.groups = found
        lines = "\n".join(f"  - {g.words()}" for g in found)
        super().__init__(f"these results files do not come from one machine, kernel and clean commit "
                         f"({len(found)} setting{'s' if len(found) != 1 else ''}):\n{lines}\n"
                         f"Re-run them on one machine from one clean commit, or pass {ALLOW_OPTION} to write the "
                         "report anyway (it then says so at its top and in each section).")


def check(results: Iterable[dict[str, Any]], allow_mixed: bool = False) -> list[Group]:
    """The groups; raises :class:`MixedEnvironments` when they are mixed and that is not allowed."""
    found = groups(results)
    if mixed(found) and not allow_mixed:
        raise MixedEnvironments(found)
    return found


def agreed(found: list[Group]) -> str:
    """The one line an unmixed report states: "All 12 results files: one machine (...), kernel
    ..., commit abc123, clean tree." ("" when mixed)."""
    if mixed(found) or not found:
        return ""
    s, n = found[0].setting, len(found[0].files)
    return (f"All {n} results file{'s' if n != 1 else ''}: one machine ({s.machine_words()}), kernel {s.kernel}, "
            f"commit {s.commit}, {s.tree_words()}.")


def warning(found: list[Group]) -> str:
    """The warning at the top of a mixed report ("" when not mixed)."""
    if not mixed(found):
        return ""
    text = (f"Warning: these results files were not measured in one setting ({', '.join(differences(found))}): "
            + "; ".join(g.words() for g in found) + ".")
    if len(found) > 1:
        text += (" Numbers from different settings are not comparable as if measured side by side; each section "
                 "says where its own files span more than one setting.")
    if any(g.setting.dirty for g in found):
        text += " A dirty tree's numbers belong to code no commit holds."
    return text


def differences(found: list[Group]) -> list[str]:
    """What differs between the groups, in words: machines, kernels, commits, dirty trees."""
    settings = [g.setting for g in found]
    out = []
    if len({(s.cpu, s.cores, s.memory_gib) for s in settings}) > 1:
        out.append("machines differ")
    if len({s.kernel for s in settings}) > 1:
        out.append("kernels differ")
    if len({s.commit for s in settings}) > 1:
        out.append("commits differ")
    if any(s.dirty for s in settings):
        out.append("dirty trees")
    if any(s.dirty is None or not s.recorded for s in settings):
        out.append("some files do not record it")
    return out


def section_note(results: Iterable[dict[str, Any]]) -> str:
    """A note for a section whose files span more than one group ("" when they share one)."""
    found = groups(results)
    if len(found) < 2:
        return ""
    return (f"Note: this section's {sum(len(g.files) for g in found)} results files span {len(found)} settings "
            f"({', '.join(differences(found))}): " + "; ".join(g.words() for g in found) + ".")


def said(results: Iterable[dict[str, Any]]) -> str:
    """One statement about the files' settings: the plain line when they share one clean
    setting, else the warning with every setting (for notebooks and other views)."""
    found = groups(results)
    return agreed(found) or warning(found)
