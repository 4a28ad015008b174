"""A network namespace of our own, to cut one broker node off from its peers: a real partition.

Needs root and iproute2's ``ip`` (no iptables: the cut is made with policy-routing rules). The
namespace gets one veth pair to the host: the host side holds ``<prefix>.1`` (a /24 of
198.18.0.0/15, the range set aside for benchmarks), the namespace side one address per node
(``<prefix>.2``, ``.3``...) and ``<prefix>.254`` for connections no program binds. Nodes started
with :meth:`Namespace.command` bind their own address and use it as the source of their own
connections (Redis's ``bind-source-addr``, Erlang's ``inet_dist_connect_options``), so a rule
``from A to B blackhole`` drops exactly what node A sends to node B. Clients stay on the host and
keep reaching every node, as clients on the leader's side of a real partition do.

The namespace, its veth pair, its rules and its processes are the only things touched: nothing in the host's
own network changes, and :meth:`Namespace.remove` (also run at exit) deletes them, even after a
failure.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

RULE_PREF = 10          # our blackhole rules come before the local table (moved to LOCAL_PREF)
LOCAL_PREF = 100


def why_not() -> str | None:
    """None if a namespace can be made here, else why not (in words)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"bbprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return done


@dataclass
class Namespace:
    """One namespace, ``size`` node addresses in it, reachable from the host."""

    size: int
    name: str = field(default_factory=lambda: f"bb{uuid.uuid4().hex[:8]}")
    # 198.18.0.0/15 is set aside for benchmarking networks (RFC 2544): no real network uses it
    prefix: str = field(default_factory=lambda: f"198.{random.randint(18, 19)}.{random.randint(0, 255)}")
    cuts: list[tuple[str, str]] = field(default_factory=list)
    made: bool = False

    @property
    def host_side(self) -> str:
        return f"h{self.name}"[:15]

    def address(self, index: int) -> str:
        """The address of node ``index`` (0-based)."""
        return f"{self.prefix}.{index + 2}"

    @property
    def tools_address(self) -> str:
        """The namespace's own address, for connections that bind none (never cut)."""
        return f"{self.prefix}.254"

    def create(self) -> "Namespace":
        reason = why_not()
        if reason is not None:
            raise RuntimeError(f"cannot make a network namespace here: {reason}")
        atexit.register(self.remove)
        _ip("netns", "add", self.name)
        self.made = True
        inner = f"n{self.name}"[:15]
        _ip("link", "add", self.host_side, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", self.name)
        _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.host_side)
        _ip("link", "set", self.host_side, "up")
        # The first address on the link is the source of connections no program binds (e.g.
        # rabbitmqctl's to epmd): one that belongs to no node, so no cut drops them.
        _ip("addr", "add", f"{self.tools_address}/24", "dev", inner, ns=self.name)
        for i in range(self.size):
            _ip("addr", "add", f"{self.address(i)}/24", "dev", inner, ns=self.name)
        _ip("link", "set", inner, "up", ns=self.name)
        _ip("link", "set", "lo", "up", ns=self.name)
        # Traffic between two addresses of the namespace is local: our rules must be read
        # before the local table's, which the kernel puts first (pref 0).
        _ip("rule", "add", "pref", str(LOCAL_PREF), "lookup", "local", ns=self.name)
        _ip("rule", "del", "pref", "0", ns=self.name)
        return self

    @staticmethod
    def can_switch_user() -> bool:
        """Whether :meth:`command` can run a program as another user: that takes util-linux's
        ``nsenter`` (``ip netns exec`` cannot drop root)."""
        return shutil.which("nsenter") is not None

    def command(self, args: list[str], user: Any = None) -> list[str]:
        """``args`` run inside the namespace; as ``user`` (a :mod:`pwd` entry) if given, with
        no supplementary groups (nsenter's --setgid clears them). The program is exec'd, not
        forked: its pid is the one :class:`subprocess.Popen` returns."""
        if user is None:
            return ["ip", "netns", "exec", self.name, *args]
        return ["nsenter", f"--net=/run/netns/{self.name}", f"--setgid={user.pw_gid}",
                f"--setuid={user.pw_uid}", *args]

    def pids(self) -> list[int]:
        """The processes running in the namespace."""
        done = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def cut(self, address: str, others: list[str]) -> None:
        """Drop everything between ``address`` and each of ``others``, both ways."""
        for other in others:
            for a, b in ((address, other), (other, address)):
                _ip("rule", "add", "pref", str(RULE_PREF), "from", a, "to", b, "blackhole", ns=self.name)
                self.cuts.append((a, b))

    def heal(self) -> None:
        """Remove every cut."""
        while self.cuts:
            a, b = self.cuts.pop()
            _ip("rule", "del", "pref", str(RULE_PREF), "from", a, "to", b, "blackhole", ns=self.name, check=False)

    def remove(self) -> None:
        """Kill what still runs in the namespace (e.g. the ``epmd`` an Erlang node started),
        delete it and the host side of the veth."""
        if not self.made:
            return
        self.cuts.clear()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.host_side, check=False)  # usually gone with the namespace
        self.made = False
