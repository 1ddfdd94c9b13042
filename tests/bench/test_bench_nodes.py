"""Benchmarks of the node layer against issue #3's targets (run by nox -s bench; needs root).

Node start <= 5 s; >= 300 new connections/s through a ClusterIP in UML and >= 1,000/s on
the host netns node; 100 pods <= 500 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.node import create_node

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parent.parent.parent
CONNECTIONS_PER_S = {"uml": 300, "netns": 1000}


def need(kind: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if kind == "uml" and shutil.which("linux.uml") is None:
        pytest.skip("needs linux.uml: apt-get install user-mode-linux")


def smoke(kind: str, pods: int, requests: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "smoke",
            "--node",
            kind,
            "--pods",
            str(pods),
            "--requests",
            str(requests),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_node_start(benchmark: Any, kind: str) -> None:
    need(kind)

    def start_and_stop() -> float:
        with create_node(kind) as node:
            return node.info.start_s

    benchmark.pedantic(start_and_stop, rounds=3, iterations=1)
    assert benchmark.stats.stats.median <= 5.0


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_new_connections_per_second(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    need(kind)
    result = smoke(kind, pods=4, requests=3000)
    with capsys.disabled():
        print(
            f"\n{kind}: {result['connections_per_s']} new connections/s through a ClusterIP"
            f" ({result['requests']} requests, {result['failed']} failed, kernel {result['kernel']},"
            f" {result['syscall_us']} us/syscall)"
        )
    assert result["failed"] == 0
    assert result["connections_per_s"] >= CONNECTIONS_PER_S[kind]


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_hundred_pods_memory(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    need(kind)
    result = smoke(kind, pods=100, requests=1000)
    with capsys.disabled():
        print(
            f"\n{kind}: 100 pods took {result['pods_mb']} MB (MemAvailable before - after);"
            f" {len(result['backends'])} pods answered"
        )
    assert len(result["backends"]) == 100 and result["failed"] == 0
    assert result["pods_mb"] <= 500
