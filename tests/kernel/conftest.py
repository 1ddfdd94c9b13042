"""Fixtures for real-kernel tests: throwaway network namespaces, removed even on failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.kernel


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables-legacy-restore", "iptables-nft-restore"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install iproute2 iptables)"
    return None


def require_kernel() -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)


def sh(*args: str, netns: str | None = None, check: bool = True, input: str | None = None) -> str:
    cmd = list(args) if netns is None else ["ip", "netns", "exec", netns, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, input=input).stdout


class Netns:
    """A network namespace that is gone after the test, whatever happened in it."""

    def __init__(self, prefix: str = "kpb") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "set", "lo", "up", netns=self.name)

    def run(self, *args: str, check: bool = True) -> str:
        return sh(*args, netns=self.name, check=check)

    def delete(self) -> None:
        # Processes left inside would keep the namespace alive: end them first.
        pids = sh("ip", "netns", "pids", self.name, check=False).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        sh("ip", "netns", "del", self.name, check=False)


@pytest.fixture
def netns_factory() -> Iterator[type[Netns]]:
    require_kernel()
    made: list[Netns] = []

    class Tracked(Netns):
        def __init__(self, prefix: str = "kpb") -> None:
            super().__init__(prefix)
            made.append(self)

    yield Tracked
    for ns in made:
        ns.delete()
    leftover = [ns.name for ns in made if ns.name in sh("ip", "netns", "list")]
    assert not leftover, f"namespaces left behind: {leftover}"


@pytest.fixture
def node(netns_factory: type[Netns]) -> Netns:
    return netns_factory("kpb-node")
