"""Keeping the CPUs out of idle states while a run measures (``Scenario.awake_cpus``,
``brokerbench run --awake-cpus``; the reference and its contender runs turn it on).

Why: with one job in flight (a producer that awaits each add or confirm, a worker that waits
for the next job), every round trip puts the client's CPU and the broker's to sleep and wakes
them again. On a virtual machine an idle CPU halts, and waking it costs an exit to the
hypervisor and an interrupt: on this project's 2-core VM that came to about 100 us per round
trip, more than Redis's own work for an add. A figure taken that way measures the machine's
idle states, and it favours whichever client happens to keep a CPU busy (a second process of
its own, say) over one that waits in a single thread. Latency-tuned hosts avoid it the way
tuned's latency-performance profile does: a PM QoS request of 0 us on /dev/cpu_dma_latency,
held open for as long as it should last, makes an idle CPU poll instead of halting.

Idle time stays idle: the kernel's polling loop is the idle task, so /proc/stat still counts it
as idle and every CPU-busy and CPU-seconds figure keeps its meaning. The request needs write
access to /dev/cpu_dma_latency (root); without it the run goes on and its record says the CPUs
were left to idle, and why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path
from typing import Any

QOS_DEVICE = Path("/dev/cpu_dma_latency")
PR_SET_TIMERSLACK, PR_GET_TIMERSLACK = 29, 30
IDLE_DRIVER = Path("/sys/devices/system/cpu/cpuidle/current_driver")


class AwakeCpus:
    """A PM QoS request of 0 us latency, held from :meth:`hold` to :meth:`release` (or to the
    end of the process: the kernel drops the request with its file). ``was_held``: it was held
    (what :meth:`record` says, also after the release)."""

    def __init__(self, device: Path = QOS_DEVICE) -> None:
        self.device = device
        self._fd: int | None = None
        self.was_held = False
        self.why = "not asked for (awake_cpus not set)"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def hold(self) -> bool:
        """Ask every CPU to poll rather than sleep when idle; True when the request is held."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.device, os.O_WRONLY)
        except OSError as exc:
            self.why = f"not held: cannot open {self.device} ({exc.strerror}; it needs root)"
            return False
        try:
            os.write(fd, struct.pack("i", 0))
        except OSError as exc:
            os.close(fd)
            self.why = f"not held: {self.device} refused the request ({exc.strerror})"
            return False
        self._fd, self.was_held = fd, True
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def in_force(self) -> int | None:
        """The latency the kernel now grants idle CPUs, in us, across every request of every
        process (0 while one asks for 0); None where it cannot be read."""
        try:
            with open(self.device, "rb") as f:
                return struct.unpack("i", f.read(4))[0]
        except (OSError, struct.error):
            return None

    def record(self) -> dict[str, Any]:
        """What the results file says (``environment.cpu_pinning.idle``)."""
        try:
            driver = IDLE_DRIVER.read_text().strip()
        except OSError:
            driver = None
        if self.was_held:
            return {"awake": True, "idle_driver": driver,
                    "how": f"PM QoS request of 0 us held on {self.device}: idle CPUs polled instead of halting"}
        return {"awake": False, "idle_driver": driver, "why": self.why}


def tighten_timer_slack(ns: int = 1000) -> int | None:
    """Let this thread's sleeps end within ``ns`` of their time (Linux's default timer slack is
    50 us, which would add that much to a paced producer's send times). The slack now in force,
    or None where it cannot be set (not Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0)
        return int(libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return None
