"""Figures quoted in prose, checked against the results files they come from, so no page drifts.

A page (the teaching pages, README, the notebooks' text) marks each measured figure it quotes:

    volatile-lru evicted <!--q:eviction.volatile_lru.evicted-->1,540<!--/q--> keys

The comment is invisible where Markdown is rendered (GitHub, Jupyter); the text between the two
marks is the figure as the page prints it. Each name is defined once, in :mod:`.quoted`, as a
function of a results folder (by default the committed reference). Then:

    brokerbench quotes            check every mark: exit 1 and list each page, line, name, the
                                  figure printed and the one the files give, when any differs
    brokerbench quotes --update   rewrite every marked figure from the files (after a new reference)
    brokerbench quotes --list     every name, its figure and where it is quoted

A test runs the check on main, so a page and its file cannot disagree. Only the figure between
the marks follows the files; the sentence around it is the author's to keep true (the check
prints which figures moved, so their sentences can be reread).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reports" / "reference" / "results"
MARK = re.compile(r"<!--q:(?P<name>[A-Za-z0-9_.:-]+)-->(?P<text>.*?)<!--/q-->")

# The prose that quotes figures: every file here is checked (relative to the project root).
PAGES = ("README.md", "docs/teaching/*.md", "notebooks/make_notebooks.py", "notebooks/*.ipynb")


class QuoteError(ValueError):
    """A quoted figure cannot be read from the results (no file, several, a field missing)."""


# --- reading the results -----------------------------------------------------------------


def dig(d: Any, path: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``; None where any step is missing."""
    for step in path.split("."):
        if not isinstance(d, dict) or step not in d:
            return None
        d = d[step]
    return d


@dataclass
class Results:
    """The results files of one folder, read once, picked by file pattern and field values."""

    folder: Path
    _cache: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False)

    def _load(self, path: Path) -> dict[str, Any]:
        if path not in self._cache:
            self._cache[path] = json.loads(path.read_text())
        return self._cache[path]

    def files(self, pattern: str, **where: Any) -> list[dict[str, Any]]:
        """Files matching ``pattern`` whose fields equal ``where`` (``fault__profile`` is
        ``fault.profile``), in name order."""
        found = []
        for path in sorted(self.folder.glob(pattern)):
            if path.name.startswith("summary"):
                continue
            d = self._load(path)
            if all(dig(d, k.replace("__", ".")) == v for k, v in where.items()):
                found.append(d)
        if not found:
            said = ", ".join(f"{k.replace('__', '.')}={v!r}" for k, v in where.items())
            raise QuoteError(f"no results file {pattern}" + (f" with {said}" if said else "") + f" in {self.folder}")
        return found

    def one(self, pattern: str, **where: Any) -> dict[str, Any]:
        found = self.files(pattern, **where)
        if len(found) > 1:
            raise QuoteError(f"{len(found)} results files match {pattern} {where}: the quote must say which")
        return found[0]

    def values(self, pattern: str, path: str, **where: Any) -> list[float]:
        out = []
        for d in self.files(pattern, **where):
            v = dig(d, path)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise QuoteError(f"{pattern}: field {path} is {v!r}, not a number")
            out.append(v)
        return out

    def value(self, pattern: str, path: str, **where: Any) -> float:
        v = dig(self.one(pattern, **where), path)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise QuoteError(f"{pattern}: field {path} is {v!r}, not a number")
        return v


# --- how figures are printed -------------------------------------------------------------


def count(v: float) -> str:
    """1540 -> "1,540"."""
    return f"{round(v):,}"


def fixed(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


def span(values: Iterable[float], show: Callable[[float], str] = count) -> str:
    """The smallest and largest of several runs, "a-b" (one figure when they print the same)."""
    vs = list(values)
    lo, hi = show(min(vs)), show(max(vs))
    return lo if lo == hi else f"{lo}-{hi}"


def middle(values: Iterable[float]) -> float:
    return median(list(values))


# --- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    name: str
    what: str
    figure: Callable[[Results], str]


QUOTES: dict[str, Quote] = {}


def quote(name: str, what: str) -> Callable[[Callable[[Results], str]], Callable[[Results], str]]:
    """Register ``figure(results) -> text`` as the quote ``name`` (``what`` says what it is)."""
    def register(figure: Callable[[Results], str]) -> Callable[[Results], str]:
        if name in QUOTES:
            raise ValueError(f"quote {name} defined twice")
        QUOTES[name] = Quote(name, what, figure)
        return figure
    return register


def registry() -> dict[str, Quote]:
    from . import quoted  # noqa: F401  (defines every quote on import)
    return QUOTES


# --- the pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    page: str
    line: int
    name: str
    text: str


@dataclass(frozen=True)
class Mismatch:
    mark: Mark
    expected: str   # what the files give, or why they give nothing

    def __str__(self) -> str:
        m = self.mark
        return f"{m.page}:{m.line}: {m.name}: the page says {m.text!r}, the results give {self.expected!r}"


def pages(root: Path = ROOT) -> list[Path]:
    found: list[Path] = []
    for pattern in PAGES:
        found.extend(sorted(root.glob(pattern)))
    return found


def marks(root: Path = ROOT) -> list[Mark]:
    out = []
    for path in pages(root):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in MARK.finditer(line):
                out.append(Mark(str(path.relative_to(root)), n, m["name"], m["text"]))
    return out


def figures(results: Results, names: Iterable[str]) -> dict[str, str]:
    """name -> the figure the files give, or an error text starting with "!"."""
    known = registry()
    out: dict[str, str] = {}
    for name in set(names):
        if name not in known:
            out[name] = "! no such quote (benchmarks/results/quoted.py defines them)"
            continue
        try:
            out[name] = known[name].figure(results)
        except QuoteError as exc:
            out[name] = f"! {exc}"
    return out


def check(results_dir: Path = REFERENCE, root: Path = ROOT) -> list[Mismatch]:
    """Every mark whose figure differs from the one its results give (none when all agree)."""
    found = marks(root)
    given = figures(Results(Path(results_dir)), (m.name for m in found))
    return [Mismatch(m, given[m.name]) for m in found if given[m.name] != m.text]


def update(results_dir: Path = REFERENCE, root: Path = ROOT) -> list[Mismatch]:
    """Rewrite every marked figure from the results; returns what changed. A quote the files
    cannot give is left as it is and returned (with its reason)."""
    changed = check(results_dir, root)
    given = {c.mark.name: c.expected for c in changed}
    for path in pages(root):
        text = path.read_text()

        def rewrite(m: re.Match[str]) -> str:
            new = given.get(m["name"])
            if new is None or new.startswith("!"):
                return m[0]
            return f"<!--q:{m['name']}-->{new}<!--/q-->"

        new_text = MARK.sub(rewrite, text)
        if new_text != text:
            path.write_text(new_text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brokerbench quotes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REFERENCE,
                        help="results folder the figures come from (default: reports/reference/results)")
    parser.add_argument("--update", action="store_true", help="rewrite every marked figure from the results")
    parser.add_argument("--list", action="store_true", help="print every quote, its figure and where it is quoted")
    args = parser.parse_args(argv)
    if args.list:
        used: dict[str, list[str]] = {}
        for m in marks():
            used.setdefault(m.name, []).append(f"{m.page}:{m.line}")
        given = figures(Results(args.results), registry())
        for name, q in sorted(registry().items()):
            print(f"{name:44s} {given[name]:>14s}  {q.what}")
            print(f"{'':44s} {'':>14s}  quoted in: {', '.join(used.get(name, [])) or 'nowhere'}")
        return 0
    if args.update:
        changed = update(args.results)
        for c in changed:
            verb = "cannot update" if c.expected.startswith("!") else "updated"
            print(f"{verb}: {c}")
        print(f"{len(changed)} quoted figures differed from {args.results}; reread the sentences around them")
        return 1 if any(c.expected.startswith("!") for c in changed) else 0
    wrong = check(args.results)
    for w in wrong:
        print(w)
    total = len(marks())
    if wrong:
        print(f"{len(wrong)} of {total} quoted figures differ from {args.results} "
              "(brokerbench quotes --update rewrites them)", file=sys.stderr)
        return 1
    print(f"all {total} quoted figures agree with {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
