"""The report's building blocks: what each section hands to the Markdown and HTML writers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Block:
    kind: str            # heading, text, table, image
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    image: str = ""      # file name under plots/


def figure(plot_dir: Path, name: str, fig: Any, alt: str) -> Block:
    """Save ``fig`` as ``plot_dir/name.png`` and return the block that shows it."""
    fig.savefig(plot_dir / f"{name}.png", dpi=110)
    return Block("image", alt, image=f"{name}.png")
