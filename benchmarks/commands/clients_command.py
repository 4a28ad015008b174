"""``brokerbench clients``: the clients a run can use, and ``install`` for the contenders' packages.

    brokerbench clients            every client: its server, whether it is the official library,
                                   and whether it can run here (else what to install)
    brokerbench clients install    the Node contenders' packages, exactly as the lockfile pins
                                   them (npm ci in benchmarks/contenders/node)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

from brokers import clients, registry


def _status(client: clients.Client) -> str:
    try:
        client.check_available()
    except clients.ClientUnavailable as exc:
        return f"not ready: {exc}"
    return "ready"


def install() -> int:
    """Install the Node contenders' pinned packages; the exit code of npm ci (or 1 without npm)."""
    if shutil.which("npm") is None:
        print("brokerbench clients install: npm is not installed (install Node.js 18 or later, with npm)")
        return 1
    print(f"brokerbench clients install: {clients.NODE_INSTALL}")
    return subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(clients.NODE_FOLDER)]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brokerbench clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=("list", "install"), default="list",
                        help="list the clients (default), or install the contenders' packages")
    args = parser.parse_args(argv)
    if args.action == "install":
        code = install()
        if code:
            raise SystemExit(code)
        return 0
    for kind in registry.kinds():
        for client in clients.for_server(kind):
            who = "official" if client.official else "ours"
            print(f"{client.name:14s} on {kind:9s} {who:8s} {client.label}: {_status(client)}")
    return 0
