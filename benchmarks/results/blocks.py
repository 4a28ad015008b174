"""The report's building blocks: what each section hands to the Markdown and HTML writers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Block:
    kind: str            # heading, text, table, image
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    image: str = ""      # file name under plots/
