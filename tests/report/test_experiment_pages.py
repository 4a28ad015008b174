"""The figures docs/teaching/production.md gives from experiment files agree with those files."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "teaching" / "production.md"


def _file_named_after(prefix: str) -> Path:
    names = re.findall(rf"`(reports/experiments/{prefix}-\d{{8}}-\d{{6}}\.json)`", PAGE.read_text())
    assert len(names) == 1, f"production.md names one {prefix} file, not {names}"
    path = ROOT / names[0]
    assert path.exists(), f"{names[0]}: quoted by production.md, not committed"
    return path


def test_unroutable_lines_are_the_files_trials():
    data = json.loads(_file_named_after("unroutable").read_text())
    page = " ".join(PAGE.read_text().split())
    for mode in data["settings"]["modes"]:
        trials = [t for t in data["trials"] if t["mode"] == mode]
        assert trials and all("error" not in t for t in trials), trials
        said = {f"{t['acked']:,} confirmed, {t['returned']:,} returned, {t['in_any_queue']:,} in any queue"
                for t in trials}
        assert len(said) == 1, f"{mode}: the trials differ ({said}); the page says they are the same"
        figures = said.pop()
        found = re.search(rf"\* {re.escape(mode)}[^:]*: ([^;*]+?)(?:[;:(]|\.|$)", page)
        assert found, f"production.md has no line for {mode}"
        assert found.group(1).strip() == figures, f"{mode}: the page says '{found.group(1)}', the file '{figures}'"
    assert f"{data['settings']['messages']:,} persistent messages per trial" in page
    assert f"{data['settings']['repeat']} trials per way" in page


def test_consumer_timeout_lines_are_the_files_trials():
    data = json.loads(_file_named_after("consumer-timeout").read_text())
    page = " ".join(PAGE.read_text().split())
    settings = data["settings"]
    assert f"`consumer_timeout = {settings['consumer_timeout_ms']}`" in page
    assert f"held {settings['hold_s']} s by its first run" in page
    pika, ours = data["trials"]
    assert "error" not in pika and "error" not in ours, data["trials"]
    assert f"closed the channel at {pika['channel_closed_at_s']} s with {pika['close_code']}" in page
    assert f"(ran {pika['ran']} times, at once: {'yes' if pika['ran_at_once'] else 'no'})" in page
    assert pika["runs"][0]["ack"].endswith("ChannelWrongStateError") and "`ChannelWrongStateError`" in page
    assert f"the worker logged the closed channel at {ours['worker_warnings'][0]['at_s']} s" in page
    assert f"ran the redelivered job at {ours['runs'][1]['started_s']} s" in page
    assert f"(ran {ours['ran']} times, {'at once' if ours['ran_at_once'] else 'not at once'})" in page
    report = ours["report"]
    assert f"(completed {report['completed']}, lost_lock {report['lost_lock']})" in page
