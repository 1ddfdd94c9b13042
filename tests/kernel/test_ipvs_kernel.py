"""ipvs mode on a real kernel: inside the UML node, whose kernel has IPVS (the host's may not)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import pytest

from harness.node import create_node
from tests.cli import ROOT

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("linux.uml") is None:
        pytest.skip("needs linux.uml: apt-get install user-mode-linux")
    with create_node("uml") as node:
        out = node.run([sys.executable, str(ROOT / "tests/kernel/ipvs_guest.py")], timeout=300)
        assert out.returncode == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def test_seed_cluster_read_back_with_ipvsadm_and_ipset(guest: dict[str, Any]) -> None:
    seed = guest["seed"]
    assert seed["rc"] == 0, seed["stderr"]
    assert "-A -t 10.101.57.97:80 -s rr" in seed["ipvsadm"]
    for ip in ("10.244.0.27", "10.244.0.28", "10.244.0.30"):
        assert f"-a -t 10.101.57.97:80 -r {ip}:80 -m -w 1" in seed["ipvsadm"]
    assert "-A -u 10.96.0.10:53 -s rr" in seed["ipvsadm"]
    loop_back = sorted(l.split()[2] for l in seed["ipset"] if l.startswith("add KUBE-LOOP-BACK "))
    assert loop_back == sorted(
        [
            "10.244.0.27,tcp:80,10.244.0.27",
            "10.244.0.28,tcp:80,10.244.0.28",
            "10.244.0.30,tcp:80,10.244.0.30",
            "10.244.0.29,tcp:53,10.244.0.29",
            "10.244.0.29,udp:53,10.244.0.29",
            "10.244.0.29,tcp:9153,10.244.0.29",
        ]
    )
    assert any(
        l.startswith(
            "create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536"
        )
        for l in seed["ipset"]
    )
    assert "add KUBE-CLUSTER-IP 10.101.57.97,tcp:80" in seed["ipset"]
    assert "10.101.57.97/32" in seed["addresses"]
    assert set(seed["sysctls"].values()) == {"1"}  # the sysctls kube-proxy's ipvs proxier sets
    assert (
        '-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for'
        ' solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE'
    ) in seed["iptables"]


def test_incremental_change_and_drift_repair(guest: dict[str, Any]) -> None:
    inc = guest["incremental"]
    assert (inc["first"], inc["second"]) == ("full", "incremental")
    assert inc["second_ops"] == ["add_dest", "del_dest"] and inc["second_netlink_ops"] == 2
    assert "-a -t 10.96.0.50:80 -r 10.244.1.3:8080 -m -w 1" in inc["after_change"]
    assert not any("10.244.1.2:8080" in l for l in inc["after_change"])
    assert not any("10.244.1.1:8080" in l for l in inc["drifted"])
    assert "-a -t 10.96.0.50:80 -r 10.244.1.1:8080 -m -w 1" in inc["repaired"]
    assert inc["repair_ops"] == ["add_dest"]


def test_graceful_termination(guest: dict[str, Any]) -> None:
    g = guest["graceful"]
    assert g["held"], "no connection reached the pod"
    assert g["drain_ops"] == ["add_dest", "set_dest"]  # the new pod added, the old one drained
    assert "-a -t 10.96.0.60:80 -r 10.244.9.2:8080 -m -w 0" in g["while_open"]
    assert g["active_while_open"] == 1  # the kernel counts the open connection
    assert not g["early"]  # with the connection open and the timeout not passed: nothing to do
    assert g["finish_ops"] == ["del_dest"]
    assert not any("10.244.9.2" in l for l in g["after_close"]) and not g["pending"]
