"""A toy broker kind, registered from outside brokerbench (``BROKERBENCH_DRIVERS=
tests.helpers.toy_driver``): the in-process adapter under another name, with a descriptor of its
own. Nothing under brokers/ or benchmarks/ knows it; the test that registers it shows the
harness, a fault scenario and the contract suite pick it up all the same."""

from __future__ import annotations

from dataclasses import replace

from brokers import memory


class ToyBroker(memory.MemoryBroker):
    """The in-process adapter, as a broker kind of its own."""

    kind = "toy"


DRIVER = replace(memory.DRIVER, kind="toy", label="toy (in-process)", adapter_path="tests.helpers.toy_driver:ToyBroker",
                 colour="#CC79A7", marker="D")
