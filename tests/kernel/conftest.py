"""Fixtures for real-kernel tests: throwaway network namespaces, removed even on failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from harness.netns import Netns, existing

NetnsFactory = Callable[[str], Netns]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables-legacy-restore", "iptables-nft-restore"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install iproute2 iptables)"
    return None


@pytest.fixture
def netns_factory() -> Iterator[NetnsFactory]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    made: list[Netns] = []

    def make(prefix: str = "kpb") -> Netns:
        ns = Netns(prefix).__enter__()
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in reversed(made):
            ns.__exit__(None, None, None)
    leftover = set(ns.name for ns in made) & set(existing())
    assert not leftover, f"namespaces left behind: {leftover}"


@pytest.fixture
def node(netns_factory: NetnsFactory) -> Netns:
    return netns_factory("kpb-node")
