"""The ``brokerbench`` command. Each subcommand lives in its own module; this file only routes."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from brokers.contract import BrokerError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function taking argv, one-line help)
    "run": ("benchmarks.commands.run:main",
            "run scenarios; with no arguments, the default Redis vs RabbitMQ comparison"),
    "compare": ("benchmarks.results.compare:main",
                "A B: does B differ beyond the noise, per figure; one folder: its runs"),
    "scenario": ("benchmarks.commands.scenarios:main", "one fault scenario on private brokers (see `scenarios`)"),
    "scenarios": ("benchmarks.commands.scenarios:main_all", "every fault scenario, ending with one table"),
    "report": ("benchmarks.results.report:main", "results files -> Markdown and HTML report with plots"),
    "setup-cost": ("benchmarks.commands.setup_cost:main", "start-up time and declared objects of each broker"),
    "latency": ("benchmarks.commands.latency:main",
                "end to end at a fixed rate, one worker: ours vs official BullMQ / plain pika"),
    "enqueue": ("benchmarks.commands.enqueue:main",
                "one producer adds N jobs, one at a time and in batches: ours vs official BullMQ / plain pika"),
    "drain": ("benchmarks.commands.drain:main",
              "one worker process drains N no-op jobs: ours vs official BullMQ / plain pika"),
    "live": ("benchmarks.live.command:main",
             "both brokers side by side in a browser while load runs, with faults on buttons (for a class)"),
}


def _load(target: str) -> Callable[[list[str]], object]:
    from importlib import import_module

    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(
        prog="brokerbench",
        description="Measure and teach how a BullMQ-style queue on Redis and RabbitMQ differ.")
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), help="what to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        print("\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:10s} {text}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        parser.error(f"unknown command {command!r}; choose from {', '.join(sorted(COMMANDS))}")
    try:
        _load(COMMANDS[command][0])(argv[1:])
    except BrokerError as exc:
        print(f"brokerbench {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
