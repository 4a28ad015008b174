"""The ``brokerbench`` command. Each subcommand lives in its own module; this file only routes.

SIGTERM (a plain ``kill``) stops every subcommand as Ctrl-C does: :func:`stop_on_sigterm`,
installed before any subcommand runs, raises KeyboardInterrupt in the main thread, so the
``finally`` blocks, context managers and atexit hooks that stop private brokers, role
processes and network namespaces run (they ran only on Ctrl-C or a normal exit before: a
killed ``brokerbench run`` left its root redis-server behind). A further SIGTERM while that
clean-up runs is ignored (it must not cut it short: SIGKILL still ends everything at once).
A subcommand may install its own handler (``live`` does); the processes it starts (role and
load processes: spawned or from a fork server, so not inheriting a Python handler) keep the
default. :func:`main` called in-process (tests) puts back the handler it found when it returns.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable

from brokers.contract import BrokerError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function taking argv, one-line help)
    "run": ("benchmarks.commands.run:main",
            "run scenarios; with no arguments, the default Redis vs RabbitMQ comparison"),
    "reference": ("benchmarks.commands.reference:main",
                  "regenerate the whole reference report: every part, reference length, one machine, one commit"),
    "compare": ("benchmarks.results.compare:main",
                "A B: does B differ beyond the noise, per figure; one folder: its runs"),
    "scenario": ("benchmarks.commands.scenarios:main", "one fault scenario on private brokers (see `scenarios`)"),
    "scenarios": ("benchmarks.commands.scenarios:main_all", "every fault scenario, ending with one table"),
    "report": ("benchmarks.results.report:main", "results files -> Markdown and HTML report with plots"),
    "quotes": ("benchmarks.results.quotes:main",
               "check (or --update) every figure the pages quote against the results files"),
    "setup-cost": ("benchmarks.commands.setup_cost:main", "start-up time and declared objects of each broker"),
    "latency": ("benchmarks.commands.latency:main",
                "end to end at a fixed rate, one worker: ours vs official BullMQ / plain pika"),
    "enqueue": ("benchmarks.commands.enqueue:main",
                "one producer adds N jobs, one at a time and in batches: ours vs official BullMQ / plain pika"),
    "drain": ("benchmarks.commands.drain:main",
              "one worker process drains N no-op jobs: ours vs official BullMQ / plain pika"),
    "clients": ("benchmarks.commands.clients_command:main",
                "the clients a run can use (ours, the official BullMQ on Node, amqplib); `install` their packages"),
    "live": ("benchmarks.live.command:main",
             "both brokers side by side in a browser while load runs, with faults on buttons (for a class)"),
}


def _load(target: str) -> Callable[[list[str]], object]:
    from importlib import import_module

    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


class _Terminated:
    """The SIGTERM handler: the first SIGTERM raises KeyboardInterrupt in the main thread;
    later ones, and any once the subcommand is over (its clean-up and atexit's run then), are
    ignored, so nothing cuts a clean-up short."""

    def __init__(self) -> None:
        self.received = 0
        self.unwinding = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.received == 1 and not self.unwinding:
            self.unwinding = True
            print("brokerbench: terminated (SIGTERM); stopping what it started…", file=sys.stderr, flush=True)
            raise KeyboardInterrupt


def stop_on_sigterm(handler: _Terminated) -> Any:
    """Make SIGTERM unwind the main thread like Ctrl-C (see the module's docstring); returns
    the handler it replaced, or None (nothing changed) where it cannot: outside the main
    thread, or when whoever started us ignores SIGTERM on purpose."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return None
    signal.signal(signal.SIGTERM, handler)
    return previous


def main(argv: list[str] | None = None) -> int:
    """Route to the subcommand. With ``argv`` None this is the process's own command (the
    ``brokerbench`` script): a SIGTERM stays ignored after the subcommand ends, through the
    atexit clean-up. Called with ``argv`` (tests, notebooks) it restores the SIGTERM handler
    it found when it returns."""
    entry = argv is None
    handler = _Terminated()
    previous = stop_on_sigterm(handler)
    try:
        return _route(list(sys.argv[1:] if argv is None else argv), handler)
    finally:
        handler.unwinding = True  # the clean-up after the subcommand is not cut short
        if previous is not None and not entry:
            signal.signal(signal.SIGTERM, previous)


def _route(argv: list[str], handler: _Terminated) -> int:
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
        return 128 + signal.SIGTERM if handler.received else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
