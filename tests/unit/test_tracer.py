"""Behaviour, not text: trace new connections through the rendered rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reconciler.iptables.render import IptablesConfig
from reconciler.iptables.tracer import Tracer
from tests.helpers import EndpointSpec, PortSpec, eps, fold, svc, tracer_for, watch_event

# kube-proxy's test conventions: pods 10.0.0.0/8, ClusterIPs 172.30.0.0/16, node 192.168.0.2,
# an external client 203.0.113.2.
CONFIG = IptablesConfig(cluster_cidr="10.0.0.0/8")
NODE = "192.168.0.2"
POD = "10.0.0.2"
EXTERNAL = "203.0.113.2"


def cluster() -> Tracer:
    dns = (PortSpec(53, "dns", "UDP"), PortSpec(53, "dns-tcp", "TCP"))
    multi = (PortSpec(80, "http", target_port=8080), PortSpec(443, "https", target_port=8443))
    state = fold(
        [
            svc("svc1", "172.30.0.41"),
            eps("svc1", ["10.180.0.1"]),
            svc("multi", "172.30.0.42", multi),
            eps("multi", ["10.180.0.2", "10.180.0.3", "10.180.0.4"], multi),
            svc("dns", "172.30.0.43", dns),
            eps("dns", ["10.180.0.5"], dns),
            svc("empty", "172.30.0.44"),
            svc("notready", "172.30.0.45"),
            eps(
                "notready",
                [EndpointSpec("10.180.0.6", ready=False), EndpointSpec("10.180.0.7", ready=True)],
            ),
            svc("terminating", "172.30.0.46"),
            eps(
                "terminating",
                [
                    EndpointSpec("10.180.0.8", ready=False, serving=True, terminating=True),
                    EndpointSpec("10.180.0.9", ready=False, serving=False, terminating=True),
                ],
            ),
            svc("sticky", "172.30.0.47", session_affinity_timeout=10800),
            eps("sticky", ["10.180.0.10", "10.180.0.11"]),
            svc("np", "172.30.0.48", (PortSpec(80, "p80", node_port=3001),), type_="NodePort"),
            eps("np", ["10.180.0.12"]),
            svc("npempty", "172.30.0.49", (PortSpec(80, "p80", node_port=3002),), type_="NodePort"),
            svc("ext", "172.30.0.50", external_ips=["192.168.99.11"]),
            eps("ext", ["10.180.0.13"]),
            svc("gone", "172.30.0.51"),
            eps("gone", ["10.180.0.14"]),
            watch_event("DELETED", svc("gone", "172.30.0.51")["object"]),
        ]
    )
    return tracer_for(state, CONFIG, node_ip=NODE)


@dataclass(frozen=True)
class Flow:
    name: str
    source: str
    destination: str
    port: int
    verdict: str
    endpoints: dict[str, bool] | None = None  # endpoint -> masqueraded
    protocol: str = "tcp"


FLOWS = [
    Flow("pod to cluster IP", POD, "172.30.0.41", 80, "DNAT", {"10.180.0.1:80": False}),
    Flow(
        "external to cluster IP is masqueraded",
        EXTERNAL,
        "172.30.0.41",
        80,
        "DNAT",
        {"10.180.0.1:80": True},
    ),
    Flow(
        "node to cluster IP is masqueraded",
        NODE,
        "172.30.0.41",
        80,
        "DNAT",
        {"10.180.0.1:80": True},
    ),
    Flow("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "DNAT", {"10.180.0.1:80": True}),
    Flow("wrong port of a cluster IP", POD, "172.30.0.41", 81, ""),
    Flow(
        "multiple endpoints, named target port",
        POD,
        "172.30.0.42",
        80,
        "DNAT",
        {"10.180.0.2:8080": False, "10.180.0.3:8080": False, "10.180.0.4:8080": False},
    ),
    Flow(
        "second named port",
        POD,
        "172.30.0.42",
        443,
        "DNAT",
        {"10.180.0.2:8443": False, "10.180.0.3:8443": False, "10.180.0.4:8443": False},
    ),
    Flow(
        "hairpin with several endpoints masquerades only its own path",
        "10.180.0.3",
        "172.30.0.42",
        80,
        "DNAT",
        {"10.180.0.2:8080": False, "10.180.0.3:8080": True, "10.180.0.4:8080": False},
    ),
    Flow("UDP port", POD, "172.30.0.43", 53, "DNAT", {"10.180.0.5:53": False}, "udp"),
    Flow("TCP port on the same number", POD, "172.30.0.43", 53, "DNAT", {"10.180.0.5:53": False}),
    Flow("TCP-only port does not match UDP", POD, "172.30.0.41", 80, "", None, "udp"),
    Flow("no endpoints is rejected", POD, "172.30.0.44", 80, "REJECT"),
    Flow(
        "not-ready endpoints are skipped", POD, "172.30.0.45", 80, "DNAT", {"10.180.0.7:80": False}
    ),
    Flow(
        "only terminating: serving ones are used",
        POD,
        "172.30.0.46",
        80,
        "DNAT",
        {"10.180.0.8:80": False},
    ),
    Flow(
        "session affinity reaches every endpoint on a new connection",
        POD,
        "172.30.0.47",
        80,
        "DNAT",
        {"10.180.0.10:80": False, "10.180.0.11:80": False},
    ),
    Flow(
        "external to NodePort is masqueraded",
        EXTERNAL,
        NODE,
        3001,
        "DNAT",
        {"10.180.0.12:80": True},
    ),
    Flow("pod to NodePort", POD, NODE, 3001, "DNAT", {"10.180.0.12:80": True}),
    Flow("localhost to NodePort", "127.0.0.1", "127.0.0.1", 3001, "DNAT", {"10.180.0.12:80": True}),
    Flow("NodePort without endpoints is rejected", EXTERNAL, NODE, 3002, "REJECT"),
    Flow(
        "cluster IP of a NodePort service",
        POD,
        "172.30.0.48",
        80,
        "DNAT",
        {"10.180.0.12:80": False},
    ),
    Flow("external IP", EXTERNAL, "192.168.99.11", 80, "DNAT", {"10.180.0.13:80": True}),
    Flow("deleted service matches nothing", POD, "172.30.0.51", 80, ""),
]


@pytest.fixture(scope="module")
def tracer() -> Tracer:
    return cluster()


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_packet_flow(tracer: Tracer, flow: Flow) -> None:
    trace = tracer.trace(flow.source, flow.destination, flow.port, flow.protocol)
    assert trace.verdict == flow.verdict
    assert trace.endpoints == (flow.endpoints or {})


def test_external_traffic_policy_local_keeps_source_and_drops_without_local_endpoints() -> None:
    spec = {"externalTrafficPolicy": "Local"}
    ports = (PortSpec(80, "p80", node_port=3001),)
    events = [
        svc("loc", "172.30.0.60", ports, type_="NodePort", extra_spec=spec),
        eps(
            "loc",
            [
                EndpointSpec("10.180.0.20", node_name="node-a"),
                EndpointSpec("10.180.0.21", node_name="node-b"),
            ],
            ports,
        ),
    ]
    from reconciler.state import ClusterState

    local = tracer_for(fold(events, ClusterState(node_name="node-a")), CONFIG, node_ip=NODE)
    trace = local.trace(EXTERNAL, NODE, 3001)
    assert trace.endpoints == {"10.180.0.20:80": False}  # only the local one, source kept
    assert local.trace(POD, "172.30.0.60", 80).destinations == ["10.180.0.20:80", "10.180.0.21:80"]

    remote = tracer_for(fold(events, ClusterState(node_name="node-c")), CONFIG, node_ip=NODE)
    assert remote.trace(EXTERNAL, NODE, 3001).verdict == "DROP"
    assert remote.trace(POD, NODE, 3001).destinations == ["10.180.0.20:80", "10.180.0.21:80"]


def test_internal_traffic_policy_local_drops_without_local_endpoints() -> None:
    from reconciler.state import ClusterState

    events = [
        svc("itp", "172.30.0.61", extra_spec={"internalTrafficPolicy": "Local"}),
        eps("itp", [EndpointSpec("10.180.0.22", node_name="node-b")]),
    ]
    assert (
        tracer_for(fold(events, ClusterState(node_name="node-a")), CONFIG)
        .trace(POD, "172.30.0.61", 80)
        .verdict
        == "DROP"
    )
    on_b = tracer_for(fold(events, ClusterState(node_name="node-b")), CONFIG)
    assert on_b.trace(POD, "172.30.0.61", 80).destinations == ["10.180.0.22:80"]
