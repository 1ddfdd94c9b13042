"""Real-kernel ipvs scenarios, run inside a UML guest by test_ipvs_kernel.py (prints JSON).

Each scenario returns facts read back from the kernel with the standard tools; the pytest
side asserts on them, so a failure shows what the kernel really held.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from harness.backend import listen_in_netns
from harness.eventlog import (
    EndpointSpec,
    PortSpec,
    endpoint_slice_object,
    service_object,
    watch_event,
)
from reconciler.events import decode_line
from reconciler.ipvs.kernel import KernelIpvs
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import IpvsConfig
from reconciler.state import ClusterState

ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG = IpvsConfig(cluster_cidr="10.244.0.0/16")


def sh(cmd: str) -> str:
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout


def fold(state: ClusterState, *events: dict[str, Any]) -> None:
    for e in events:
        decoded = decode_line(orjson.dumps(e))
        assert decoded is not None
        state.apply(decoded)


def web(ips: list[str], event: str = "ADDED") -> dict[str, Any]:
    return watch_event(
        event,
        endpoint_slice_object(
            "default",
            "web",
            "web-1",
            [EndpointSpec(ip) for ip in ips],
            [PortSpec(80, "http", target_port=8080)],
        ),
    )


def seed() -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "--log",
            str(ROOT / "tests/data/seed.jsonl"),
            "--mode",
            "ipvs",
            "--cluster-cidr",
            "10.244.0.0/16",
            "--hostname-override",
            "minikube",
            "--once",
            "--iptables",
            "legacy",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return {
        "rc": out.returncode,
        "stderr": out.stderr,
        "ipvsadm": sh("ipvsadm -S -n").splitlines(),
        "ipset": sh("ipset save").splitlines(),
        "addresses": sh("ip -o -4 addr show dev kube-ipvs0").split(),
        "iptables": sh("iptables-legacy-save").splitlines(),
        "sysctls": {
            name: Path(f"/proc/sys/{name.replace('.', '/')}").read_text().strip()
            for name in (
                "net.ipv4.vs.conntrack",
                "net.ipv4.vs.expire_nodest_conn",
                "net.ipv4.vs.expire_quiescent_template",
                "net.ipv4.ip_forward",
            )
        },
    }


def incremental_and_drift() -> dict[str, Any]:
    sh("ipvsadm -C")
    state = ClusterState()
    proxier = IpvsProxier(state, KernelIpvs("legacy"), CONFIG)
    port = [PortSpec(80, "http", target_port=8080)]
    fold(
        state,
        watch_event("ADDED", service_object("default", "web", "10.96.0.50", port)),
        web(["10.244.1.1", "10.244.1.2"]),
    )
    first = proxier.sync()
    fold(state, web(["10.244.1.1", "10.244.1.3"], "MODIFIED"))
    second = proxier.sync()
    after_change = sh("ipvsadm -S -n").splitlines()
    sh("ipvsadm -d -t 10.96.0.50:80 -r 10.244.1.1:8080")  # drift: deleted by hand
    drifted = sh("ipvsadm -S -n").splitlines()
    repaired = proxier.sync(full=True)
    assert first and second and repaired
    return {
        "first": first.metrics.sync,
        "second": second.metrics.sync,
        "second_ops": [o.kind for o in second.ops],
        "second_netlink_ops": second.metrics.ops,
        "after_change": after_change,
        "drifted": drifted,
        "repaired": sh("ipvsadm -S -n").splitlines(),
        "repair_ops": [o.kind for o in repaired.ops],
    }


def graceful_termination() -> dict[str, Any]:
    """A real server with an open connection is drained (weight 0), and deleted after the drain
    timeout (its closed connection stays in IPVS's TIME_WAIT for 2 minutes, so "idle" would
    take that long; the unit tests cover deletion on idle)."""
    sh("ipvsadm -C")
    sh(
        "ip netns add gpod; ip link add gveth type veth peer name eth0 netns gpod;"
        " ip link set gveth up; ip addr add 10.244.9.1/24 dev gveth;"
        " ip -n gpod addr add 10.244.9.2/24 dev eth0; ip -n gpod link set eth0 up;"
        " ip -n gpod link set lo up; ip -n gpod route add default via 10.244.9.1"
    )
    listener = listen_in_netns("/run/netns/gpod", 8080)
    listener.setblocking(True)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    state = ClusterState()
    kernel = KernelIpvs("legacy")
    proxier = IpvsProxier(state, kernel, CONFIG, drain_timeout_s=2.0)
    port = [PortSpec(80, "http", target_port=8080)]
    fold(
        state,
        watch_event("ADDED", service_object("default", "web", "10.96.0.60", port)),
        watch_event(
            "ADDED",
            endpoint_slice_object("default", "web", "web-1", [EndpointSpec("10.244.9.2")], port),
        ),
    )
    proxier.sync()
    client = socket.create_connection(("10.96.0.60", 80), timeout=5)
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        time.sleep(0.05)
    # The pod is replaced by another (whose address nobody answers; no traffic goes there).
    fold(
        state,
        watch_event(
            "MODIFIED",
            endpoint_slice_object("default", "web", "web-1", [EndpointSpec("10.244.9.3")], port),
        ),
    )
    drained = proxier.sync()
    while_open = sh("ipvsadm -S -n").splitlines()
    from reconciler.ipvs.model import RealServer, ServiceKey

    conns = kernel.destinations(ServiceKey("TCP", "10.96.0.60", 80)).get(
        RealServer("10.244.9.2", 8080)
    )
    early = proxier.sync()  # still within the drain timeout, with the connection open
    client.close()
    for s in held:
        s.close()
    time.sleep(2.5)  # past the drain timeout
    finished = proxier.sync()
    sh("ip netns del gpod")
    return {
        "held": bool(held),
        "drain_ops": [o.kind for o in drained.ops] if drained else [],
        "while_open": while_open,
        "active_while_open": conns.active if conns else None,
        "early": early is not None,
        "finish_ops": [o.kind for o in finished.ops] if finished else [],
        "after_close": sh("ipvsadm -S -n").splitlines(),
        "pending": proxier.pending_work,
    }


if __name__ == "__main__":
    results = {
        "seed": seed(),
        "incremental": incremental_and_drift(),
        "graceful": graceful_termination(),
    }
    print(json.dumps(results))
