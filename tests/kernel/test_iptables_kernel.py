"""The reconciler against real iptables in fresh network namespaces, with both backends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from harness.netns import Netns
from tests.cli import ROOT, reconciler
from tests.helpers import PortSpec, eps, svc, watch_event
from tests.kernel.conftest import NetnsFactory

pytestmark = pytest.mark.kernel
SEED = "tests/data/seed.jsonl"
CIDR = ("--cluster-cidr", "10.244.0.0/16")
BACKENDS = ["legacy", "nft"]


def save(ns: Netns, backend: str) -> str:
    return ns.run(f"iptables-{backend}-save")


def rules_only(saved: str) -> list[str]:
    """iptables-save without the comment lines (timestamps) and counters."""
    return [
        l.split(" [")[0] if l.startswith(":") else l
        for l in saved.splitlines()
        if not l.startswith("#")
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_applied_and_read_back(node: Netns, backend: str, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    out = reconciler(
        "run",
        "--log",
        SEED,
        "--mode",
        "iptables",
        *CIDR,
        "--once",
        "--iptables",
        backend,
        "--metrics",
        str(metrics),
        netns=node.name,
    )
    assert out.returncode == 0, out.stderr
    saved = save(node, backend)
    # The seed article's iptables-save, including the kernel's 32-bit probability.
    assert (
        "-A KUBE-SVC-V2OKYYMBY3REGZOG ! -s 10.244.0.0/16 -d 10.101.57.97/32 -p tcp -m comment"
        ' --comment "default/nginx-service cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ'
    ) in saved
    assert (
        '-A KUBE-SVC-V2OKYYMBY3REGZOG -m comment --comment "default/nginx-service -> 10.244.0.27:80"'
        " -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-POZMZY2HDLRATSJV"
    ) in saved
    assert "--probability 0.50000000000 -j KUBE-SEP-Z3HXRORN5VDCFRJU" in saved
    assert (
        '-A KUBE-SEP-POZMZY2HDLRATSJV -s 10.244.0.27/32 -m comment --comment "default/nginx-service" -j KUBE-MARK-MASQ'
        in saved
    )
    assert (
        '-A KUBE-SEP-POZMZY2HDLRATSJV -p tcp -m comment --comment "default/nginx-service" -m tcp'
        " -j DNAT --to-destination 10.244.0.27:80"
    ) in saved
    assert (
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in saved
    )
    for chain in (
        "KUBE-SVC-NPX46M4PTMTKRN6Y",
        "KUBE-SVC-TCOU7JCQXEZGVUNU",
        "KUBE-SVC-ERIFXISQEP7F7OF4",
        "KUBE-SVC-JD5MR3NA4I4DYORP",
    ):
        assert f":{chain} - " in saved
    (record,) = [orjson.loads(l) for l in metrics.read_text().splitlines()]
    assert record["mode"] == "iptables" and record["sync"] == "full"
    assert record["services"] == 5 and record["endpoints"] == 7
    assert record["bytes"] > 0 and record["rules"] > 0 and record["latency_s"] is not None

    # Applying the same log again changes nothing: no duplicated jumps, same rules.
    again = reconciler(
        "run", "--log", SEED, *CIDR, "--once", "--iptables", backend, netns=node.name
    )
    assert again.returncode == 0, again.stderr
    assert rules_only(save(node, backend)) == rules_only(saved)


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_log_converges_the_kernel(node: Netns, backend: str, tmp_path: Path) -> None:
    assert (
        reconciler(
            "run", "--log", SEED, *CIDR, "--once", "--iptables", backend, netns=node.name
        ).returncode
        == 0
    )
    other = tmp_path / "other.jsonl"
    other.write_bytes(
        b"".join(
            orjson.dumps(e) + b"\n"
            for e in [
                svc("web", "10.96.5.5", [PortSpec(80, "http")]),
                eps("web", ["10.244.1.1", "10.244.1.2"], [PortSpec(80, "http")]),
            ]
        )
    )
    out = reconciler(
        "run", "--log", str(other), *CIDR, "--once", "--iptables", backend, netns=node.name
    )
    assert out.returncode == 0, out.stderr
    saved = save(node, backend)
    chains = [l.split()[0][1:] for l in saved.splitlines() if l.startswith(":KUBE-S")]
    service_chains = [c for c in chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]
    assert len(service_chains) == 3  # web's SVC and two SEPs; the seed's are gone
    assert "V2OKYYMBY3REGZOG" not in saved and "10.244.1.2:80" in saved


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_log_leaves_the_kernel_as_it_was(node: Netns, backend: str, tmp_path: Path) -> None:
    assert (
        reconciler(
            "run", "--log", SEED, *CIDR, "--once", "--iptables", backend, netns=node.name
        ).returncode
        == 0
    )
    before = rules_only(save(node, backend))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        orjson.dumps(svc("web", "10.96.5.5"))
        + b"\n"
        + orjson.dumps(eps("web", ["10.244.1.300"]))
        + b"\n"
    )
    out = reconciler(
        "run", "--log", str(bad), *CIDR, "--once", "--iptables", backend, netns=node.name
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"{bad}:2: invalid IP address '10.244.1.300' in EndpointSlice ns1/web-abc endpoints"
    )
    assert rules_only(save(node, backend)) == before


def test_follow_mode_syncs_appended_events(node: Netns, tmp_path: Path) -> None:
    log, metrics = tmp_path / "events.jsonl", tmp_path / "metrics.jsonl"
    log.write_bytes(b"")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            node.name,
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "--log",
            str(log),
            *CIDR,
            "--follow",
            "--min-sync-period",
            "100ms",
            "--metrics",
            str(metrics),
        ],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def records() -> list[dict[str, object]]:
            return (
                [orjson.loads(l) for l in metrics.read_text().splitlines()]
                if metrics.exists()
                else []
            )

        def wait(predicate: object, timeout: float = 15) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if predicate():  # type: ignore[operator]
                    return
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
            raise AssertionError(f"timed out; metrics: {records()}")

        wait(lambda: len(records()) >= 1)
        with log.open("ab") as fh:
            fh.write(Path(ROOT / SEED).read_bytes())
        wait(lambda: "KUBE-SVC-V2OKYYMBY3REGZOG" in node.run("iptables-save"))
        change = watch_event(
            "MODIFIED", orjson.loads(Path(ROOT / SEED).read_bytes().splitlines()[-1])["object"]
        )
        change["object"]["endpoints"][0]["addresses"] = ["10.244.0.31"]  # type: ignore[index]
        with log.open("ab") as fh:
            fh.write(orjson.dumps(change) + b"\n")
        wait(lambda: "10.244.0.31:80" in node.run("iptables-save"))
        last = records()[-1]
        assert last["sync"] == "partial" and last["changed_services"] == 1
        assert isinstance(last["latency_s"], float) and 0 <= last["latency_s"] < 5
        assert "10.244.0.28:80" not in node.run("iptables-save")  # the replaced pod's SEP is gone
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.recv(1024)
    c.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\n" + sys.argv[1].encode()); c.close()
"""
CLIENT = """
import socket, collections, sys, json
seen = collections.Counter()
for _ in range(int(sys.argv[2])):
    c = socket.create_connection((sys.argv[1], 80), timeout=5)
    c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); data = b""
    while chunk := c.recv(1024): data += chunk
    seen[data.split(b"\\r\\n\\r\\n", 1)[1].decode()] += 1; c.close()
print(json.dumps(seen))
"""


def test_real_connections_through_a_cluster_ip(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """Two pods behind a ClusterIP; new TCP connections from the node reach both."""
    node = netns_factory("kpb-node")
    node.run("ip", "link", "add", "br0", "type", "bridge")
    node.run("ip", "addr", "add", "10.244.0.1/24", "dev", "br0")
    node.run("ip", "link", "set", "br0", "up")
    node.run("ip", "route", "add", "10.96.0.0/12", "dev", "br0")  # a route for the ClusterIP range
    servers = []
    try:
        for i, ip in enumerate(["10.244.0.10", "10.244.0.11"]):
            pod = netns_factory("kpb-pod")
            node.run(
                "ip",
                "link",
                "add",
                f"veth{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.name,
            )
            node.run("ip", "link", "set", f"veth{i}", "master", "br0", "up")
            pod.run("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            pod.run("ip", "link", "set", "eth0", "up")
            pod.run("ip", "route", "add", "default", "via", "10.244.0.1")
            server = subprocess.Popen(
                ["ip", "netns", "exec", pod.name, sys.executable, "-c", SERVER, f"pod-{i}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        log = tmp_path / "events.jsonl"
        port = [PortSpec(80, "http", target_port=8080)]
        log.write_bytes(
            b"".join(
                orjson.dumps(e) + b"\n"
                for e in [
                    svc("web", "10.96.7.7", port),
                    eps("web", ["10.244.0.10", "10.244.0.11"], port),
                ]
            )
        )
        out = reconciler("run", "--log", str(log), *CIDR, "--once", netns=node.name)
        assert out.returncode == 0, out.stderr
        result = node.run(sys.executable, "-c", CLIENT, "10.96.7.7", "200")
        counts = orjson.loads(result)
        assert sum(counts.values()) == 200
        assert set(counts) == {"pod-0", "pod-1"}
        assert min(counts.values()) > 50  # 1/2 each; P(< 50 of 200) is about 1e-13
    finally:
        for server in servers:
            server.kill()
            server.wait()
