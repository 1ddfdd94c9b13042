"""Nodes for real: UML and host-netns nodes boot, carry traffic to every pod, and leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.netns import existing
from harness.node import create_node
from tests.cli import ROOT

pytestmark = pytest.mark.kernel


def need(kind: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces; UML module loading inside the guest)")
    if kind == "uml" and shutil.which("linux.uml") is None:
        pytest.skip("needs linux.uml: apt-get install user-mode-linux")
    if shutil.which("iptables-legacy-restore") is None:
        pytest.skip("needs iptables: apt-get install iptables")


def leftovers() -> dict[str, list[str]]:
    """What a run could leave behind: namespaces, UML processes, run and work directories."""
    procs = subprocess.run(
        ["pgrep", "-af", "linux.uml|harness.inside|reconciler run"], capture_output=True, text=True
    ).stdout.splitlines()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return {
        "netns": [n for n in existing() if n.startswith("kpbench-")],
        "processes": [p for p in procs if "pgrep" not in p],
        "dirs": sorted(str(p) for p in tmp.glob("kpbench-*")),
    }


def smoke(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_node_boots_runs_as_root_and_is_removed(kind: str) -> None:
    need(kind)
    before = leftovers()
    with create_node(kind) as node:
        out = node.run(
            ["sh", "-c", "id -u; uname -r; cat /proc/sys/net/ipv4/ip_forward"], timeout=60
        )
        assert out.returncode == 0, out.stderr
        uid, release, _ = out.stdout.split()
        assert uid == "0" and release == node.info.kernel
        assert node.info.syscall_us > 0
        if kind == "uml":
            assert release.startswith("6.1.")
            assert node.info.has_ipvs  # the guest kernel has ip_vs, whatever the host lacks
            assert node.info.iptables == "legacy"
            assert node.info.start_s <= 15  # the 5 s target is checked by the benchmark
            assert node.run(["ip", "link", "add", "d0", "type", "dummy"]).returncode == 0
        failed = node.run(["sh", "-c", "echo oops >&2; exit 7"])
        assert (failed.returncode, failed.stderr) == (7, "oops\n")
    assert leftovers() == before


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_smoke_reaches_every_pod_through_the_cluster_ip(kind: str) -> None:
    need(kind)
    before = leftovers()
    out = smoke("--node", kind, "--mode", "iptables", "--pods", "3", "--requests", "150")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["node"] == kind and result["mode"] == "iptables"
    assert result["requests"] == 150 and result["failed"] == 0
    assert sorted(result["backends"]) == ["web-0", "web-1", "web-2"]
    assert sum(result["backends"].values()) == 150
    assert all(count > 10 for count in result["backends"].values())  # 1/3 each: P(<=10) < 1e-12
    assert result["kernel"] and result["syscall_us"] > 0
    assert leftovers() == before


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_failure_inside_the_node_still_cleans_up(kind: str) -> None:
    need(kind)
    before = leftovers()
    out = smoke("--node", kind, "--pods", "3", "--fail-at", "pods")
    assert out.returncode == 1
    assert "failure injected after creating the pods" in out.stderr
    assert "Traceback" not in out.stderr
    assert leftovers() == before


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_sigterm_mid_run_cleans_up(kind: str) -> None:
    need(kind)
    before = leftovers()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "smoke", "--node", kind, "--requests", "100000"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stderr is not None
    assert "node up" in proc.stderr.readline()
    time.sleep(2 if kind == "uml" else 0.5)  # well inside the run: pods up, traffic flowing
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in proc.stderr.read()
    assert leftovers() == before


def test_ipvs_on_a_kernel_without_ipvs_says_so() -> None:
    need("netns")
    with create_node("netns") as node:
        if node.info.has_ipvs:
            pytest.skip("this host kernel has IPVS")
    out = smoke("--node", "netns", "--mode", "ipvs")
    assert out.returncode == 1
    assert "has no IPVS" in out.stderr and "use --node uml" in out.stderr


def test_ipvs_smoke_round_robin_is_exact() -> None:
    need("uml")
    before = leftovers()
    out = smoke("--node", "uml", "--mode", "ipvs", "--pods", "4", "--requests", "200")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mode"] == "ipvs" and result["failed"] == 0
    counts = sorted(result["backends"].values())
    assert len(counts) == 4 and counts[-1] - counts[0] <= 1  # one client, new connections: rr
    assert leftovers() == before


KILLED_HARNESS = """
import sys, time
from harness.node import create_node
node = create_node(sys.argv[1]).__enter__()
print("up", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("kind", ["uml", "netns"])
def test_sigkill_of_the_harness_leaves_nothing(kind: str) -> None:
    """No cleanup code runs on SIGKILL: a watcher on a pipe only we hold does it."""
    need(kind)
    before = leftovers()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_HARNESS, kind],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while leftovers() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers() == before
