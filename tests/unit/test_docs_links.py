"""Every relative link in the README and the teaching material points at a file that exists, and
the teaching layer the README promises is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs" / "teaching").glob("*.md"))]


def test_relative_links_resolve():
    broken = []
    for doc in _documents():
        for target in LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_teaching_layer_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in ("run_sheet", "diagrams", "glossary", "exercises", "answers", "events_and_idempotency",
                 "which_to_choose"):
        assert f"docs/teaching/{name}.md" in readme, name
    assert "```mermaid" in (ROOT / "docs" / "teaching" / "diagrams.md").read_text()
