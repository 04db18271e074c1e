"""A private network for two test containers, on this machine only: two network namespaces
(named uniquely per run) joined by a veth pair, with loopback up in each. A container boots
into its namespace (`Container(netns=...)`); nothing is routed anywhere else."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

PREFIX_LEN = 24


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@dataclass
class PrivateNetwork:
    """Namespace name -> address, e.g. {"primary": "10.89.0.1", "worker": "10.89.0.2"}; the
    namespaces are called `trad-<pid>-<role>` so parallel runs never collide."""

    addresses: dict[str, str]
    namespaces: dict[str, str] = field(init=False, default_factory=dict)
    ends: dict[str, str] = field(init=False, default_factory=dict)  # role -> its end of the veth pair

    def create(self) -> PrivateNetwork:
        if len(self.addresses) != 2:
            raise ValueError("a veth pair joins exactly two namespaces")
        tag = os.getpid()
        try:
            for role in self.addresses:
                name = f"trad-{tag}-{role}"
                _run("ip", "netns", "add", name)
                self.namespaces[role] = name
                _run("ip", "-n", name, "link", "set", "lo", "up")
            (a, ns_a), (b, ns_b) = self.namespaces.items()
            ends = {a: f"tv{tag % 100000}a", b: f"tv{tag % 100000}b"}  # interface names: 15 chars at most
            _run("ip", "link", "add", ends[a], "netns", ns_a, "type", "veth", "peer", "name", ends[b], "netns", ns_b)
            self.ends = ends
            for role, ns in self.namespaces.items():
                _run("ip", "-n", ns, "addr", "add", f"{self.addresses[role]}/{PREFIX_LEN}", "dev", ends[role])
                self.set_link(role, up=True)
        except BaseException:
            self.destroy()
            raise
        return self

    def set_link(self, role: str, up: bool) -> None:
        """Bring one end of the link up or down: down is a partition (packets are dropped, no
        connection is reset), up heals it."""
        _run("ip", "-n", self.namespaces[role], "link", "set", self.ends[role], "up" if up else "down")

    def run(self, role: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A command in one namespace (as a host on that end of the link), e.g. a client probe."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespaces[role], *cmd], capture_output=True, text=True, timeout=timeout
        )

    def destroy(self) -> None:
        """Delete the namespaces (the veth pair goes with them)."""
        for name in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self.namespaces.clear()
