"""The contenders' fixture: their runtime and pinned packages, installed on first use.

Node.js is on every CI machine, so there these tests run, never skip: ``.ci/run`` sets
BROKERBENCH_REQUIRE_NODE=1, and a missing Node then fails them. On a machine without Node they
are skipped and say what to install. The pinned packages (benchmarks/contenders/node's
lockfile) are installed by the session itself when missing, as brokerbench finds or starts its
brokers itself."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from brokers import clients

NODE_CLIENTS = [c.name for c in clients.contenders() if c.command and c.command[0] == "node"]
PYTHON_CLIENTS = [c.name for c in clients.contenders() if c.command and c.command[0] == sys.executable]


@pytest.fixture(scope="session")
def node_ready() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        why = "Node.js 18+ with npm is not installed: the contender tests need it"
        if os.environ.get("BROKERBENCH_REQUIRE_NODE"):
            pytest.fail(why + " (BROKERBENCH_REQUIRE_NODE is set)")
        pytest.skip(why)
    try:
        for name in NODE_CLIENTS:
            clients.get(name).check_available()
    except clients.ClientUnavailable:
        from benchmarks.commands.clients_command import install

        assert install() == 0, "brokerbench clients install (npm ci) failed"


@pytest.fixture(params=NODE_CLIENTS)
def node_client(request: pytest.FixtureRequest, node_ready: None) -> clients.Client:
    return clients.get(request.param)


TOY = "toy-redis-list"   # tests/contenders/toy: a client registered from outside, its role in Python


@pytest.fixture(params=[*NODE_CLIENTS, *PYTHON_CLIENTS, TOY])
def role_client(request: pytest.FixtureRequest):
    """Every role program the conformance test must hold for: the Node and Python contenders,
    and the toy."""
    if request.param != TOY:
        if request.param in NODE_CLIENTS:
            request.getfixturevalue("node_ready")
        yield clients.get(request.param)
        return
    from importlib import import_module

    client = clients.register(import_module("tests.contenders.toy.client").CLIENT)
    try:
        yield client
    finally:
        clients.unregister(TOY)
