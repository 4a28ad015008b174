"""``brokerbench report PATH... --out DIR``: results files -> a Markdown report, a self-contained
HTML report and the PNG plots, in ``DIR``.

The report reads results files only (runs, sweeps, fault scenarios, drain, latency, enqueue and
setup-cost files, found recursively under the paths given) and prints their numbers as they
are: the same files always give the same report text.

It refuses files that were not measured in one setting (one machine, kernel and clean commit:
:mod:`.environments`) unless ``--allow-mixed`` is given; the report then says so at its top
and in each section whose files span more than one setting. Percentiles follow one rule
(:mod:`.percentiles`): printed only with the samples they need, always beside their count.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokers import registry

from . import claims, experiments, fault_sections, plots, reference_clients, scenario_plots, sources, takeaways
from . import environments as envs
from . import files as results
from .blocks import Block, Section
from .clients_section import blocks as clients_blocks
from .cost_section import blocks as cost_blocks
from .percentiles import of_summary
from .summary import (
    NOISY_NOTE,
    SAMPLES_NOTE,
    SUMMARY_HEADER,
    contender,
    fmt,
    ratio_rows,
    ratio_text,
    summary_cells,
    summary_rows,
)

REFERENCE_SCENARIOS = Path(__file__).resolve().parents[2] / "reports/reference/results/scenarios/summary.json"


@dataclass
class Collected:
    runs: list[dict[str, Any]] = field(default_factory=list)        # closed/open runs of the comparison
    labelled: list[dict[str, Any]] = field(default_factory=list)    # other named runs (a scenario's baseline)
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)      # results files with a "fault" section
    rows: list[dict[str, Any]] = field(default_factory=list)        # the scenarios' summary table
    drains: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[dict[str, Any]] = field(default_factory=list)
    enqueues: list[dict[str, Any]] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)          # experiment: acks before a crash
    contenders: list[dict[str, Any]] = field(default_factory=list)    # runs of a real client (not our adapter)
    setup: dict[str, Any] | None = None

    def everything(self) -> list[dict[str, Any]]:
        return self.runs + self.labelled + self.sweeps + self.scaling + self.faults

    def every_file(self) -> list[dict[str, Any]]:
        """Every results file read, of every kind (the environments of a report are theirs)."""
        return (self.everything() + self.drains + self.latencies + self.enqueues + self.acks + self.contenders
                + ([self.setup] if self.setup else []))


def collect(paths: list[Path]) -> Collected:
    files: list[tuple[Path, Path]] = []
    for p in paths:
        files += [(f, p) for f in sorted(p.rglob("*.json"))] if p.is_dir() else [(p, p.parent)]
    out = Collected()
    for path, root in sorted(files):
        raw = json.loads(path.read_text())
        schema = raw.get("schema") if isinstance(raw, dict) else None
        if schema in results.READABLE:
            raw = results.load(path)
        if isinstance(raw, dict) and schema:
            raw[sources.SOURCE] = path.relative_to(root).as_posix()
        if schema in results.READABLE:
            if contender(raw["scenario"]):  # a real client's run: its own section, never the brokers'
                out.contenders.append(raw)
            elif "fault" in raw:
                out.faults.append(raw)
            elif raw["scenario"]["mode"] == "sweep":
                out.sweeps.append(raw)
            elif raw["scenario"].get("label", "").startswith("scaling-"):
                out.scaling.append(raw)
            elif raw["scenario"].get("label"):  # the comparison's runs are unnamed; a named run is another's
                out.labelled.append(raw)
            else:
                out.runs.append(raw)
        elif schema == "brokerbench.drain/1":
            out.drains.append(raw)
        elif schema == "brokerbench.latency/1":
            out.latencies.append(raw)
        elif schema == "brokerbench.enqueue/1":
            out.enqueues.append(raw)
        elif schema == experiments.ACKS:
            out.acks.append(raw)
        elif schema == "brokerbench.setup/1":
            out.setup = raw
        elif path.name == "summary.json" and "rows" in raw:
            out.rows += raw["rows"]
    return out


# ---------------------------------------------------------------------------------- blocks
def length_note(runs: list[dict[str, Any]]) -> str:
    """Says how long the headline's windows were, and that it is a quick look, not the reference,
    when any closed-loop window is under 30 s or any open-loop one under 60 s."""
    from ..harness.suite import REFERENCE_CLOSED_S, REFERENCE_OPEN_S

    windows = {mode: [r["figures"]["window_s"] for r in runs
                      if r["scenario"]["mode"] == mode and (r.get("figures") or {}).get("window_s")]
               for mode in ("closed", "open")}
    said = ", ".join(f"{mode} loop {min(w):g}-{max(w):g} s" if min(w) != max(w) else f"{mode} loop {w[0]:g} s"
                     for mode, w in windows.items() if w)
    if not said:
        return ""
    short = any(w < REFERENCE_CLOSED_S for w in windows["closed"]) or any(w < REFERENCE_OPEN_S for w in windows["open"])
    if short:
        return (f"A quick look, not the reference: measured windows of {said} (the reference's: at least "
                f"{REFERENCE_CLOSED_S:g} s closed loop and {REFERENCE_OPEN_S:g} s open loop; `brokerbench reference`).")
    return f"Measured windows: {said}, after a warm-up that is not counted."


def durability_runs(collected: Collected) -> list[dict[str, Any]]:
    """The mix at each durability level, for "What durability costs": the ``durability-*`` runs,
    and where they lack a (broker, level) the headline measured, the headline's own mix runs at
    it (the reference measures its main level once, in the headline, at the same length; a copy
    of each is relabelled here, its results file still named). None without durability runs."""
    labelled = [r for r in collected.labelled if r["scenario"].get("label", "").startswith("durability-")]
    if not labelled:
        return []
    have = {(r["scenario"]["broker"], r["scenario"].get("durability")) for r in labelled}
    borrowed = []
    for r in collected.runs:
        sc = r["scenario"]
        level = sc.get("durability") or ""
        if sc["profile"] == "mix" and level and (sc["broker"], level) not in have:
            borrowed.append({**r, "scenario": {**sc, "label": f"durability-{level.replace(':', '-')}"}})
    return labelled + borrowed


def summary_table(runs: list[dict[str, Any]]) -> Block:
    rows = [summary_cells(r, plots.label(r["broker"])) for r in summary_rows(runs)]
    return Block("table", header=list(SUMMARY_HEADER), rows=rows)


def sources_table(runs: list[dict[str, Any]]) -> Block:
    """The results files behind each headline row, in full: closed-loop files give max jobs/s and
    jobs/CPU-s, open-loop files the rest; each figure is the median over its files."""
    return Block("table", header=["job type", "broker", "durability", "results files (closed and open loop)"],
                 rows=[[r["profile"], plots.label(r["broker"]), r.get("durability", "-"), ", ".join(r["sources"])]
                       for r in summary_rows(runs)])


def spread_blocks(runs: list[dict[str, Any]]) -> list[Block]:
    """The noise note and the ratio between the two brokers, per repetition pair."""
    out = []
    rows = summary_rows(runs)
    if any(r.get("repetitions", 0) > 1 for r in rows):
        out.append(Block("text", "Each figure: " + NOISY_NOTE + "."))
    kinds = list(dict.fromkeys(r["broker"] for r in rows))
    if len(kinds) == 2:
        lines = ratio_text(ratio_rows(runs, *kinds), *(plots.label(k) for k in kinds))
        if lines:
            out.append(Block("text", "Ratios, each taken between runs of the same repetition (side by side in "
                                     "time), then summarised: " + "; ".join(lines) + "."))
    return out


def durability_table(collected: Collected) -> Block | None:
    """What each side of the comparison was set to keep, its promise, and what the broker-crash
    scenario measured for that profile (process SIGKILL under load), with the file."""
    used: dict[tuple[str, str], dict[str, Any]] = {}
    for r in collected.runs:
        said = r.get("durability")
        if said and said.get("profile"):
            used.setdefault((r["scenario"]["broker"], said["profile"]), said)
    if not used:
        return None
    crashes = [row for row in collected.rows if row["scenario"] == "broker crash"]
    source = ""
    if not crashes and REFERENCE_SCENARIOS.exists():  # a run's own folder: cite the committed reference
        crashes = [r for r in json.loads(REFERENCE_SCENARIOS.read_text())["rows"] if r["scenario"] == "broker crash"]
        source = "reference run: "
    rows = []
    for (kind, profile), said in used.items():
        found = [c for c in crashes if c["broker"] == kind and c["profile"] == profile]
        measured = "; ".join(f"lost {fmt(c['lost'])}, dup {fmt(c['duplicated'])} "
                             f"({source}{Path(str(c['results_file'])).name})" for c in found) \
            or "not measured in these results"
        rows.append([plots.label(kind), registry.level_label(said["level"]), profile, said.get("promise", ""),
                     said.get("how", ""), measured])
    return Block("table", header=["broker", "durability", "profile", "what it promises", "broker used",
                                  "after a broker crash (SIGKILL under load)"], rows=rows)


def level_text(runs: list[dict[str, Any]]) -> str:
    """What "accepted" meant in these runs, per level they name: the level's promise, or for an
    old level name what it paired (not always one promise)."""
    levels = dict.fromkeys((r.get("durability") or {}).get("level") or r["scenario"].get("durability", "")
                           for r in runs)
    said = []
    for level in filter(None, levels):
        if level in registry.OLD_LEVELS:
            said.append(f"These runs used the old level '{level}': {registry.OLD_LEVELS[level]}.")
        elif registry.split_level(level)[0] in registry.LEVELS:
            promise = registry.LEVELS[registry.split_level(level)[0]].promise
            said.append(f"Level '{registry.level_label(level)}': {promise[0].upper()}{promise[1:]}.")
    return " ".join(said)


def environment_table(collected: Collected) -> Block:
    """The setting of the results files: first whether they share one machine, kernel and clean
    commit (or, when not, every group with its files), then the first file's details."""
    found = envs.groups(collected.every_file())
    mixed = envs.mixed(found)
    first = next(iter(collected.everything()), None)
    env = first["environment"] if first else {}
    m = env.get("machine", {})
    rows = [["results files", envs.agreed(found) or "NOT one setting: " + ", ".join(envs.differences(found))]]
    rows += [[f"setting {i}", g.words()] for i, g in enumerate(found, start=1) if mixed]
    rows += [["machine (first file)" if mixed else "machine",
              f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, {m.get('os')}"],
             ["Python", str(env.get("python"))],
             ["packages", ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()) if v)],
             ["git commit", str(env.get("git_commit"))]]
    seen: dict[str, dict[str, Any]] = {}
    for r in collected.runs:
        seen.update(r["environment"].get("brokers", {}))
    for kind, d in sorted(seen.items()):
        settings = {k: v for k, v in d.items() if k not in ("kind", "queue", "lanes", "url")}
        rows.append([plots.label(kind), ", ".join(f"{k}={v}" for k, v in settings.items())])
    return Block("table", header=["", ""], rows=rows)


def _steps(steps: list[dict[str, Any]]) -> str:
    """A sweep's steps: each rate with its p99 and the samples it rests on (the rule applies)."""
    parts = []
    for s in steps:
        p99 = of_summary(s["figures"]["latency_ms"]["end_to_end_intended"], "p99")
        parts.append(f"{s['offered_rate']:,.0f}/s: {p99}" + ("" if s["sustainable"] else f" ({s['why_not']})"))
    return "; ".join(parts)


def _noted(items: list[Block], results: list[dict[str, Any]]) -> list[Block]:
    """``items`` (a section), with the environments note after its first heading when its
    ``results`` span more than one setting."""
    note = envs.section_note(results)
    if not note or not items:
        return items
    at = next((i + 1 for i, b in enumerate(items) if b.kind == "heading"), 0)
    return items[:at] + [Block("text", note)] + items[at:]


def ours_note(runs: list[dict[str, Any]], drains: list[dict[str, Any]]) -> str:
    """Whose code the headline measured when it has BullMQ-style runs: our adapters, not the
    official clients, and where those are compared with ours ("" without such runs)."""
    bullmq, rabbitmq = claims._kind(claims.BULLMQ), claims._kind(claims.RABBITMQ)
    if bullmq not in {r["scenario"]["broker"] for r in runs}:
        return ""
    pointer = claims.official_note(drains)
    return (f"Both sides run through this suite's own adapters: {plots.label(bullmq)} is {claims.OURS}, with "
            f"BullMQ's key layout and semantics but our own Lua scripts, not the official BullMQ client; "
            f"{plots.label(rabbitmq)} is reached through our pika adapter. {pointer[0].upper()}{pointer[1:]}.")


def title(collected: Collected) -> str:
    """The report's title, from the registry: the servers its runs measured (the compared ones
    when none say), and the real clients beside ours when there are any."""
    from brokers import clients

    present = {r.get("scenario", {}).get("broker") for r in collected.everything() + collected.contenders}
    kinds = [k for k in registry.kinds() if k in present] or registry.compared_kinds()
    text = "brokerbench: " + " against ".join(registry.get(k).label for k in kinds)
    names = sorted({c for r in collected.contenders if (c := r.get("scenario", {}).get("client"))})
    labels = []
    for name in names:
        try:
            labels.append(clients.get(name).label)
        except ValueError:   # a client registered where the files were made, not here
            labels.append(name)
    return text + (f", with {', '.join(labels)} beside our clients" if labels else "")


def blocks(collected: Collected, plot_dir: Path) -> list[Block]:
    found = envs.groups(collected.every_file())
    warning = envs.warning(found)
    where = ("measured in the settings listed in the warning below" if warning
             else "measured on the machine described here")
    out = Section(plot_dir, [Block("heading", title(collected), level=1),
                        Block("text", "Every number below comes from the results files next to this report, "
                                      f"{where}. Numbers from a shared 2-core "
                                      "machine are noisy: read the ratios between brokers, measured in the same "
                                      "run, rather than the absolute values.")])
    out.say(warning)
    out += [Block("heading", "Environment"), environment_table(collected)]

    if collected.runs:
        out += [Block("heading", "The comparison: three job types and their mix")]
        out.say(envs.section_note(collected.runs))
        out += [Block("text", "Closed loop: producers as fast as they can while the backlog stays bounded; it "
                              "measures throughput. Open loop: a fixed rate; latency is measured from each job's "
                              "intended send time, so a stalled producer cannot hide it.")]
        out.say(ours_note(collected.runs, collected.drains))
        out += [summary_table(collected.runs), Block("text", SAMPLES_NOTE + ".")]
        out.say(length_note(collected.runs))
        out += spread_blocks(collected.runs)
        out += [Block("heading", "Where each row comes from", level=3),
                Block("text", "Closed-loop files give max jobs/s and jobs/CPU-s, open-loop files the latency "
                              "columns; each figure is the median over its files. A fault scenario's baseline "
                              "runs (other settings) are never part of these rows."),
                sources_table(collected.runs)]
        out += cost_blocks(collected.runs, plot_dir)
        kept = durability_table(collected)
        if kept is not None:
            out += [Block("heading", "What each side keeps", level=3),
                    Block("text", (level_text(collected.runs) + " ").lstrip()
                          + "A process SIGKILL leaves the page cache alone, so it cannot tell fsync every second "
                            "from fsync before each reply; only an OS crash or power loss would."),
                    kept]
        out.figure("throughput", plots.throughput_by_type(collected.runs), "Maximum throughput per job type")
        out.say(takeaways.throughput(collected.runs))
        out.figure("latency-percentiles", plots.latency_percentiles(collected.runs), "Latency percentiles, open loop")
        out.say(takeaways.percentiles(collected.runs))
        out.figure("latency-cdf", plots.latency_cdf(collected.runs), "Latency CDF, mix, and its tail")
        out.say(takeaways.tail(collected.runs))
        out.figure("publish-latency", scenario_plots.publish_histogram(collected.runs), "Publish latency histogram")
        out.say(takeaways.publish(collected.runs))
    costs = durability_runs(collected)
    if costs:
        out += _noted([Block("heading", "What durability costs")], costs)
        out += [Block("text", "The mix at each durability level, closed and open loop. Each row names its broker "
                              "profile and its files; a row whose files are under runs/ is the headline's own run "
                              "at that level (the reference measures its main level once, at the same length). "
                              "`brokerbench run --scenario scenarios/durability.toml` measures every level side by "
                              "side in one go."),
                summary_table(costs), sources_table(costs)]
        out.figure("durability-cost", scenario_plots.durability_cost(costs), "Throughput and publish latency per "
                                                                         "durability level")
        out.say(takeaways.durability(costs))
        out += cost_blocks(costs, plot_dir, name="durability-cpu-per-job",
                           heading="What each job costs at each durability level: broker vs client CPU")
    if collected.sweeps:
        out += _noted([Block("heading", "Latency against load")], collected.sweeps)
        rows = [[plots.label(r["scenario"]["broker"]), r["scenario"]["profile"],
                 fmt(r.get("max_sustainable_rate")), _steps(r["steps"]), sources.of(r)] for r in collected.sweeps]
        out.append(Block("table", header=["broker", "job type", "max sustainable jobs/s", "steps", "results file"],
                         rows=rows))
        out.figure("latency-vs-load", plots.latency_vs_load(collected.sweeps), "Latency against offered load")
        out.say(takeaways.sweep(collected.sweeps))
    if collected.scaling:
        out += _noted([Block("heading", "Scaling with consumers")], collected.scaling)
        out.figure("scaling", plots.scaling_with_consumers(collected.scaling), "Throughput against consumers")
        out.say(takeaways.scaling(collected.scaling))
    out += _noted(fault_sections.blocks(collected, plot_dir), collected.faults + collected.acks)
    said = claims.all_claims(collected.runs, collected.rows, collected.drains, collected.setup, costs=costs,
                             contenders=collected.contenders)
    if said:
        out += _noted([Block("heading", "The seed's claims, measured")],
                      collected.runs + collected.faults + collected.drains + ([collected.setup] if collected.setup
                                                                              else []))
        out += [Block("table", header=["claim", "measured", "setting", "verdict", "results files"],
                      rows=[[c.claim, c.measured, c.setting, c.verdict, sources.cite(c.sources)] for c in said])]
    out += clients_blocks(collected.runs + collected.labelled, collected.contenders)
    out += reference_clients.blocks(collected.drains, collected.latencies, collected.enqueues)
    return out


# -------------------------------------------------------------------------------- renderers
def to_markdown(items: list[Block]) -> str:
    lines: list[str] = []
    for b in items:
        if b.kind == "heading":
            lines += ["#" * b.level + " " + b.text, ""]
        elif b.kind == "text":
            lines += [b.text, ""]
        elif b.kind == "image":
            lines += [f"![{b.text}](plots/{b.image})", ""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(b.header) + " |")
            lines.append("|" + "|".join("---" for _ in b.header) + "|")
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in b.rows]
            lines.append("")
    return "\n".join(lines)


def to_html(items: list[Block], plot_dir: Path) -> str:
    body: list[str] = []
    for b in items:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif b.kind == "text":
            body.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "image":
            data = base64.b64encode((plot_dir / b.image).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}"></figure>')
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "vertical-align:top}th{background:#f3f3f3}img{max-width:100%}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>brokerbench report</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def build(paths: list[Path], out: Path, allow_mixed: bool = False) -> Path:
    """Write report.md, report.html and plots/ into ``out`` from the results files under
    ``paths``. Raises ValueError when there are none, and
    :class:`~.environments.MixedEnvironments` (a ValueError naming every setting with its files)
    when they were not measured on one machine, kernel and clean commit, unless ``allow_mixed``."""
    collected = collect(paths)
    if not (collected.everything() or collected.drains or collected.latencies or collected.enqueues
            or collected.contenders):
        raise ValueError(f"no results files under {', '.join(map(str, paths))}")
    envs.check(collected.every_file(), allow_mixed)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for old in plot_dir.glob("*.png"):
        old.unlink()
    items = blocks(collected, plot_dir)
    (out / "report.md").write_text(to_markdown(items))
    (out / "report.html").write_text(to_html(items, plot_dir))
    return out / "report.md"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="brokerbench report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="results files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md, report.html, plots/ (required)")
    parser.add_argument(envs.ALLOW_OPTION, dest="allow_mixed", action="store_true",
                        help="write the report even when the files come from more than one machine, kernel or "
                             "commit, or a dirty tree; it then warns at its top and in each section (default: refuse)")
    args = parser.parse_args(argv)
    try:
        path = build(args.paths, args.out, allow_mixed=args.allow_mixed)
    except envs.MixedEnvironments as exc:
        raise SystemExit(f"brokerbench report: {exc}") from exc
    print(f"report: {path} (and {path.with_suffix('.html')})")
    return path
