"""Live progress of runs (rich): phase, elapsed time, rates in and out, backlog."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..harness.metrics import count_of
from ..harness.scenario import Scenario
from ..results.percentiles import cell
from ..results.summary import contender, who


class ProgressDisplay:
    """One status line per run, refreshed from the runner's progress callback."""

    def __init__(self, console: Any, total: int, enabled: bool = True) -> None:
        self.console, self.total, self.enabled = console, total, enabled
        self.index = 0
        self.live: Any = None
        self.scenario: Scenario | None = None
        self.last: tuple[float, int, int] | None = None
        self.rates = (0.0, 0.0)
        self.title = ""

    def __enter__(self) -> "ProgressDisplay":
        if self.enabled:
            from rich.live import Live

            self.live = Live("", console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def label(self, text: str) -> None:
        """For callers that run several scenarios themselves (fault scenarios)."""
        self.index += 1
        self.scenario = None
        self.title = text

    def begin(self, scenario: Scenario) -> None:
        self.index += 1
        self.scenario = scenario
        self.last = None
        self.rates = (0.0, 0.0)

    def update(self, snap: dict[str, Any]) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if self.last is not None and now - self.last[0] >= 0.5:
            dt = now - self.last[0]
            self.rates = ((snap["sent"] - self.last[1]) / dt, (snap["ran"] - self.last[2]) / dt)
            self.last = (now, snap["sent"], snap["ran"])
        elif self.last is None:
            self.last = (now, snap["sent"], snap["ran"])
        sc = self.scenario
        if sc is None:
            head = self.title
        else:
            rate = f" at {sc.rate:,.0f}/s" if sc.mode in ("open", "sweep") else ""
            head = f"{sc.broker} {sc.profile} {sc.mode}{rate}"
        backlog = "?" if snap["backlog"] is None else f"{snap['backlog']:,}"
        self.live.update(
            f"[bold]{self.index}/{self.total}[/bold] {head}  "
            f"[cyan]{snap['phase']}[/cyan] {snap['elapsed_s']:5.1f}s  sent {snap['sent']:,}  done {snap['ran']:,}  "
            f"in {self.rates[0]:,.0f}/s  out {self.rates[1]:,.0f}/s  backlog {backlog}")

    def end(self, result: dict[str, Any], path: Path | None) -> None:
        f = result["figures"]
        sc = result["scenario"]
        named = who({"broker": sc["broker"], "client": contender(sc)})
        head = f"{named:8s} {sc['profile']:26s} {sc['mode']:6s}"
        if f is None:
            line = f"{head} [red]failed: {'; '.join(result['errors'])}[/red]"
        else:
            e2e = f["latency_ms"]["end_to_end_intended" if sc["mode"] in ("open", "sweep") else "end_to_end"]
            n = count_of(e2e)

            def ms(q: str, width: int) -> str:  # "n too small" carries no unit
                said = cell(q, e2e.get(q), n)
                return f"{said:>{width}} ms" if said[:1].isdigit() else f"{said:>{width + 3}}"
            line = (f"{head} out {f['throughput']['out_per_s']:9,.0f}/s  p50 {ms('p50', 8)}  "
                    f"p99 {ms('p99', 11)}  n {n if n is None else f'{n:,}'}  "
                    f"lost {f['lost']}  dup {f['duplicated']}")
            if result["errors"]:
                line += f"  [yellow]{'; '.join(result['errors'])}[/yellow]"
        self.console.print(line)
