"""The fold and its change tracking."""

from __future__ import annotations

from reconciler.model import NamespacedName, Protocol, ServicePortName
from reconciler.state import ClusterState
from tests.helpers import EndpointSpec, PortSpec, eps, fold, svc, watch_event

SVC1 = NamespacedName("ns1", "svc1")
P80 = ServicePortName(SVC1, "p80", Protocol.TCP)


def test_endpoints_follow_the_named_slice_port() -> None:
    ports = (PortSpec(80, "http", target_port=8080), PortSpec(443, "https", target_port=8443))
    state = fold(
        [
            svc("svc1", "10.96.0.1", ports),
            eps("svc1", ["10.244.0.2", "10.244.0.1"], ports),
        ]
    )
    assert state.drain() == {SVC1}
    http = state.endpoints[ServicePortName(SVC1, "http", Protocol.TCP)]
    https = state.endpoints[ServicePortName(SVC1, "https", Protocol.TCP)]
    assert [e.key for e in http] == ["10.244.0.1:8080", "10.244.0.2:8080"]
    assert [e.key for e in https] == ["10.244.0.1:8443", "10.244.0.2:8443"]


def test_endpoints_sorted_as_strings_like_kube_proxy() -> None:
    state = fold([eps("svc1", ["10.0.0.9", "10.0.0.10", "10.0.0.1"])])
    state.drain()
    assert [e.key for e in state.endpoints[P80]] == ["10.0.0.10:80", "10.0.0.1:80", "10.0.0.9:80"]


def test_a_service_spreads_over_several_slices() -> None:
    state = fold(
        [
            eps("svc1", ["10.0.0.1"], slice_name="a"),
            eps("svc1", ["10.0.0.2"], slice_name="b"),
        ]
    )
    state.drain()
    assert [e.ip for e in state.endpoints[P80]] == ["10.0.0.1", "10.0.0.2"]
    fold([watch_event("DELETED", eps("svc1", [], slice_name="a")["object"])], state)
    assert state.drain() == {SVC1}
    assert [e.ip for e in state.endpoints[P80]] == ["10.0.0.2"]


def test_duplicate_address_prefers_the_non_terminating_one() -> None:
    state = fold(
        [
            eps(
                "svc1",
                [EndpointSpec("10.0.0.1", ready=False, serving=True, terminating=True)],
                slice_name="a",
            ),
            eps("svc1", ["10.0.0.1"], slice_name="b"),
        ]
    )
    state.drain()
    (only,) = state.endpoints[P80]
    assert only.ready and not only.terminating


def test_change_that_cancels_out_is_not_reported() -> None:
    state = fold([svc("svc1", "10.96.0.1"), eps("svc1", ["10.0.0.1"])])
    state.drain()
    fold(
        [eps("svc1", ["10.0.0.2"], event="MODIFIED"), eps("svc1", ["10.0.0.1"], event="MODIFIED")],
        state,
    )
    assert state.pending
    assert state.drain() == set()
    assert not state.pending


def test_deleted_service_leaves_the_maps() -> None:
    state = fold([svc("svc1", "10.96.0.1"), eps("svc1", ["10.0.0.1"])])
    state.drain()
    fold([watch_event("DELETED", svc("svc1", "10.96.0.1")["object"])], state)
    assert state.drain() == {SVC1}
    assert P80 not in state.service_ports
    assert P80 in state.endpoints  # endpoints outlive their service, as in kube-proxy


def test_local_endpoints_need_the_node_name() -> None:
    state = fold(
        [
            eps(
                "svc1",
                [
                    EndpointSpec("10.0.0.1", node_name="n1"),
                    EndpointSpec("10.0.0.2", node_name="n2"),
                ],
            )
        ],
        ClusterState(node_name="n1"),
    )
    state.drain()
    assert [(e.ip, e.is_local) for e in state.endpoints[P80]] == [
        ("10.0.0.1", True),
        ("10.0.0.2", False),
    ]


def test_same_log_same_state() -> None:
    events = [
        svc("svc1", "10.96.0.1"),
        eps("svc1", ["10.0.0.3", "10.0.0.1"]),
        svc("svc2", "10.96.0.2"),
    ]
    a, b = fold(events), fold(events)
    a.drain(), b.drain()
    assert a.endpoints == b.endpoints
    assert list(a.sorted_service_ports()) == list(b.sorted_service_ports())
