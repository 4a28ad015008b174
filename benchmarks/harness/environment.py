"""What a result was measured on: machine, software versions, broker settings, git commit.

Every results file carries this beside its figures, so that a number never travels without
the setting it was measured in. Nothing secret goes in: URLs are redacted.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

HARNESS_PACKAGES = ("brokerbench", "hdrhistogram", "psutil")


def packages() -> tuple[str, ...]:
    """The harness's packages and every registered broker's client libraries."""
    from brokers import registry

    names = list(HARNESS_PACKAGES)
    for driver in registry.drivers():
        names += [p for p in driver.packages if p not in names]
    return tuple(names)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


# What cannot change a measurement: the results themselves (``brokerbench reference`` replaces
# the committed results files while it runs, and a commit of results changes no code), and the
# prose, tests and notebooks that read them. A change there keeps the commit results name, so a
# page or a test can be fixed while a long reference run goes on, or between its parts.
NOT_MEASURED = ("reports", "docs", "notebooks", "tests", ".ci", "*.md")


def git_commit(root: Path | None = None) -> str | None:
    """The code that makes a result: the last commit that changed anything outside
    :data:`NOT_MEASURED`, with "-dirty" when files outside them have uncommitted changes
    (untracked files aside). So results written into ``reports/`` while a run goes on, or
    committed since, and edits of pages, tests or notebooks, do not change the commit the next
    result names."""
    root = root or Path(__file__).resolve().parents[2]
    code = ["--", "."] + [f":(exclude){path}" for path in NOT_MEASURED]
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--abbrev=12", *code], cwd=root,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", *code], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in packages():
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def capture(brokers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The environment of this run; ``brokers`` maps a name to the adapter's ``describe()``."""
    return {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "os": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(),
        },
        "python": platform.python_version(),
        "packages": versions(),
        "brokers": brokers or {},
        "git_commit": git_commit(),
    }


def client_record(name: str, said: dict[str, Any] | None = None) -> dict[str, Any]:
    """Which client library ran (``brokers.clients``): its name, label, whether it is the
    official library, and its runtime and library versions (a contender's own words ``said``
    in its role's ready message; for our adapters, this Python's and its drivers' packages)."""
    from brokers import clients, registry

    client = clients.get(name)
    record: dict[str, Any] = {"name": client.name, "label": client.label, "server": client.server,
                              "official": client.official}
    if client.external:
        record.update({"runtime": (said or {}).get("runtime", "unknown"),
                       "libraries": (said or {}).get("libraries", {})})
    else:
        packages = versions()
        record.update({"runtime": f"python {platform.python_version()}",
                       "libraries": {p: packages[p] for p in registry.get(client.server).packages if p in packages}})
    return record
