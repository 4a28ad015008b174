"""A toy broker kind that declares a feature it lacks: the in-process adapter under the kind
``lacking``, whose capabilities say it has no priorities. The contract suite must skip the
priority test for it, with that reason, and run everything else."""

from __future__ import annotations

from dataclasses import replace

from brokers import memory
from brokers.contract import Feature, Support


class LackingBroker(memory.MemoryBroker):
    """The in-process adapter, declaring no priorities (it still has them: only what it
    declares decides which contract tests it is held to)."""

    kind = "lacking"
    capabilities = replace(memory.MemoryBroker.capabilities,
                           priority=Feature(Support.NONE, "every job waits in one FIFO line"))


DRIVER = replace(memory.DRIVER, kind="lacking", label="lacking (in-process)",
                 adapter_path="tests.helpers.toy_lacking_driver:LackingBroker", colour="#999999", marker="x")
