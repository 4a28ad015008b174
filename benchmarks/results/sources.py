"""Where a report's numbers come from: every row and verdict names its results files.

``report.collect`` stamps each results file it reads with ``source_file`` (its path under the
folder the report was asked to read, e.g. ``runs/redis-mix-open-r1-20261202-143319.json``); a
scenario's summary row names its file in ``results_file``. These helpers turn either into the
names a reader can open, and shorten a long list of them into a glob with a count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

SOURCE = "source_file"


def of(item: dict[str, Any]) -> str:
    """The results file a result or a summary row came from ("" when it does not say)."""
    if item.get(SOURCE):
        return str(item[SOURCE])
    if item.get("results_file"):
        path = Path(str(item["results_file"]))
        return "/".join(path.parts[-2:])
    return ""


def cite(names: Iterable[str], most: int = 2) -> str:
    """Names as a reader can find them: up to ``most`` in full, more as one glob per folder
    with the number of files it stands for, e.g. ``runs/redis-*-open-r*.json (12 files)``."""
    unique = sorted({n for n in names if n})
    if len(unique) <= most:
        return ", ".join(unique) or "-"
    by_folder: dict[str, list[str]] = {}
    for name in unique:
        folder, _, file = name.rpartition("/")
        by_folder.setdefault(folder, []).append(file)
    parts = []
    for folder, files in by_folder.items():
        prefix = f"{folder}/" if folder else ""
        if len(files) <= most:
            parts += [prefix + f for f in files]
        else:
            parts.append(f"{prefix}{_glob(files)} ({len(files)} files)")
    return ", ".join(parts)


def _glob(files: list[str]) -> str:
    """One pattern for file names: the dash-separated parts they share, ``*`` where they differ."""
    split = [f.removesuffix(".json").split("-") for f in files]
    width = min(len(s) for s in split)
    out: list[str] = []
    for i in range(width):
        seen = {s[i] for s in split}
        part = seen.pop() if len(seen) == 1 else _shared_start(sorted(seen)) + "*"
        if part.endswith("*") and out and out[-1] == "*":
            continue
        out.append(part)
    if any(len(s) > width for s in split) and out[-1] != "*":
        out.append("*")
    return "-".join(out) + ".json"


def _shared_start(words: list[str]) -> str:
    first, last = words[0], words[-1]
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]
