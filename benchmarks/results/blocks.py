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


class Section(list):
    """Blocks being written, with the folder their plots are saved in."""

    def __init__(self, plot_dir: Path, blocks: list[Block] | None = None) -> None:
        super().__init__(blocks or [])
        self.plot_dir = plot_dir

    def figure(self, name: str, fig: Any, alt: str) -> None:
        """Save ``fig`` (if any) as ``plot_dir/name.png`` and add the block that shows it."""
        if fig is not None:
            fig.savefig(self.plot_dir / f"{name}.png", dpi=110)
            self.append(Block("image", alt, image=f"{name}.png"))

    def say(self, text: str) -> None:
        """A takeaway or note; nothing when there is nothing to say."""
        if text:
            self.append(Block("text", text))
