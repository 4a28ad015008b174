"""Every option of every subcommand has a one-line help text, and those with a default say it."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.commands import cli


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_option_has_help_with_its_default(command, monkeypatch, capsys):
    seen: list[tuple[tuple[str, ...], dict]] = []
    original = argparse.ArgumentParser.add_argument

    def recording(self, *names, **kwargs):
        seen.append((names, kwargs))
        return original(self, *names, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    with pytest.raises(SystemExit) as stopped:
        cli._load(cli.COMMANDS[command][0])(["--help"])
    assert stopped.value.code == 0
    assert seen, f"{command} builds its parser with argparse"
    for names, kwargs in seen:
        if names in (("-h", "--help"),) or kwargs.get("help") is argparse.SUPPRESS:
            continue
        text = kwargs.get("help") or ""
        assert text.strip() and "\n" not in text, f"{command} {names}: no one-line help"
        has_default = kwargs.get("default") not in (None, False, [], argparse.SUPPRESS) and names[0].startswith("-")
        if has_default:
            assert "default" in text, f"{command} {names}: help does not give the default"
    assert "usage" in capsys.readouterr().out
