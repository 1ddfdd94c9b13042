"""What every node kind offers: start, run a command inside, report its kernel, stop."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Python run inside a node: microseconds per system call (getppid is never cached).
CALIBRATE_SYSCALL = """
import os, time
n = 4000
best = float("inf")
for _ in range(3):
    t = time.perf_counter()
    for _ in range(n):
        os.getppid()
    best = min(best, (time.perf_counter() - t) / n)
print(round(best * 1e6, 3))
"""


class NodeUnavailable(RuntimeError):
    """The node cannot start here; the message says what is missing and how to install it."""


@dataclass(frozen=True)
class NodeInfo:
    kind: str  # "uml" or "netns"
    kernel: str  # uname -r inside the node
    syscall_us: float  # measured inside: absolute times in UML are not native
    has_ipvs: bool
    start_s: float  # from start() to ready for commands
    # The iptables backend that works in this kernel: Debian's UML kernel is built without
    # nf_tables for IPv4 (CONFIG_NF_TABLES_IPV4 unset), so only legacy iptables runs there.
    iptables: str = "legacy"


class Node(Protocol):
    """Use as a context manager: leaving it stops the node and removes all it made."""

    info: NodeInfo

    @property
    def workdir(self) -> Path:
        """A directory this side and the node's side can both write; removed with the node."""
        ...

    def __enter__(self) -> Node: ...

    def __exit__(self, *exc: object) -> None: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root in the node's network namespace and wait for it."""
        ...


def create_node(kind: str, **options: object) -> Node:
    if kind == "uml":
        from harness.node.uml import UmlNode

        return UmlNode(**options)  # type: ignore[arg-type]
    if kind == "netns":
        from harness.node.netns_node import NetnsNode

        if options:
            raise TypeError(f"the netns node takes no options, got {sorted(options)}")
        return NetnsNode()
    raise ValueError(f"unknown node kind {kind!r} (expected uml or netns)")
