"""A client registered from outside brokerbench, as a newcomer would add one: this module names
it (``CLIENT``), ``BROKERBENCH_CLIENTS=tests.contenders.toy.client`` (or the entry point group
``brokerbench.clients``) registers it, and no file of brokerbench changes. Its role program,
role.py beside this file, is a toy queue on Redis lists that speaks the role protocol."""

from __future__ import annotations

import sys
from pathlib import Path

from brokers.clients import HARNESS_OPTIONS, Client

HERE = Path(__file__).resolve().parent

CLIENT = Client(
    name="toy-redis-list", label="toy (Python, Redis lists)", server="redis", official=False,
    command=(sys.executable, str(HERE / "role.py")), cwd=HERE,
    role_options={},                  # it takes no adapter option: a level that needs one is refused
    server_side=HARNESS_OPTIONS,      # the harness's own (reconnect window, queue): not the role's business
    notes="two Redis lists per queue, one job at a time, no recovery of a killed worker's jobs",
)
