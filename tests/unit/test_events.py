"""Decoding watch events: what is accepted, and the exact reason for what is not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from harness.eventlog import EndpointSpec, PortSpec, endpoint_slice_object, service_object
from reconciler.errors import InvalidEvent
from reconciler.events import EventType, ServiceEvent, SliceEvent, decode_line
from reconciler.model import Protocol

SVC = service_object("ns1", "svc1", "10.96.0.10", [PortSpec(80, "http")])
SLICE = endpoint_slice_object(
    "ns1", "svc1", "svc1-x", [EndpointSpec("10.244.0.5")], [PortSpec(80, "http")]
)


def line(event_type: str, obj: Any) -> bytes:
    return orjson.dumps({"type": event_type, "object": obj})


def patched(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of obj with path (dot-separated, ints index lists) set; value None deletes."""
    copy = orjson.loads(orjson.dumps(obj))
    *parents, last = path.split(".")
    node = copy
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return copy


def test_service_decodes_to_ports() -> None:
    event = decode_line(line("ADDED", SVC))
    assert isinstance(event, ServiceEvent)
    assert event.type is EventType.ADDED
    (port,) = event.ports
    assert (str(port.name), port.cluster_ip, port.port, port.name.protocol) == (
        "ns1/svc1:http",
        "10.96.0.10",
        80,
        Protocol.TCP,
    )


def test_slice_decodes_endpoints_and_conditions() -> None:
    obj = endpoint_slice_object(
        "ns1",
        "svc1",
        "s",
        [
            EndpointSpec("10.244.0.5"),
            EndpointSpec("10.244.0.6", ready=False, serving=True, terminating=True),
        ],
        [PortSpec(80, "http")],
    )
    event = decode_line(line("MODIFIED", obj))
    assert isinstance(event, SliceEvent)
    assert [(e.ip, e.ready, e.serving, e.terminating) for e in event.data.endpoints] == [
        ("10.244.0.5", True, True, False),
        ("10.244.0.6", False, True, True),
    ]


@pytest.mark.parametrize(
    "text", [b"", b"   ", b'{"type": "BOOKMARK", "object": {"kind": "Service"}}']
)
def test_skipped_lines(text: bytes) -> None:
    assert decode_line(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (line("UPSERTED", SVC), "unknown event type 'UPSERTED'"),
        (line("ADDED", patched(SVC, "kind", "Pod")), "unsupported kind 'Pod'"),
        (line("ADDED", patched(SVC, "apiVersion", "v2")), "apiVersion 'v2'"),
        (line("ADDED", patched(SVC, "metadata.name", None)), "has no metadata.name"),
        (line("ADDED", patched(SVC, "metadata.namespace", None)), "has no metadata.namespace"),
        (
            line("ADDED", patched(SVC, "spec.clusterIP", "10.96.0.300")),
            "invalid IP address '10.96.0.300'",
        ),
        (line("ADDED", patched(SVC, "spec.clusterIP", "10.96.00.1")), "invalid IP address"),
        (line("ADDED", patched(SVC, "spec.ports.0.port", 70000)), "invalid port 70000"),
        (line("ADDED", patched(SVC, "spec.ports.0.port", "80")), "invalid port '80'"),
        (line("ADDED", patched(SVC, "spec.ports.0.protocol", "ICMP")), "invalid protocol 'ICMP'"),
        (line("ADDED", patched(SVC, "spec.type", "Magic")), "unknown type 'Magic'"),
        (
            line("ADDED", patched(SLICE, "metadata.labels", {})),
            "has no kubernetes.io/service-name label",
        ),
        (
            line("ADDED", patched(SLICE, "endpoints.0.addresses", ["10.244.0.999"])),
            "invalid IP address '10.244.0.999'",
        ),
        (
            line("ADDED", patched(SLICE, "endpoints.0.addresses", ["fd00::1"])),
            "IPv6 address 'fd00::1' in IPv4",
        ),
        (line("ADDED", patched(SLICE, "endpoints.0.addresses", [])), "endpoint without addresses"),
        (line("ADDED", patched(SLICE, "ports.0.port", 0)), "invalid port 0"),
        (line("ADDED", patched(SLICE, "addressType", "IPX")), "invalid addressType 'IPX'"),
        (line("DELETED", patched(SLICE, "metadata.labels", None)), "service-name label"),
    ],
)
def test_invalid_events_name_the_problem(text: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_line(text)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "patch",
    [
        ("spec.clusterIP", "None"),
        ("spec.type", "ExternalName"),
        ("spec.clusterIPs", ["fd00::10"]),
    ],
)
def test_services_without_rules(patch: tuple[str, Any]) -> None:
    obj = patched(SVC, *patch)
    if patch[1] == ["fd00::10"]:
        obj = patched(obj, "spec.clusterIP", "fd00::10")
    event = decode_line(line("ADDED", obj))
    assert isinstance(event, ServiceEvent)
    assert event.ports == ()


def test_session_affinity_defaults_to_kubernetes_timeout() -> None:
    obj = patched(SVC, "spec.sessionAffinity", "ClientIP")
    event = decode_line(line("ADDED", obj))
    assert isinstance(event, ServiceEvent)
    assert event.ports[0].affinity_timeout_s == 10800


def test_kubernetes_client_serialization_is_accepted() -> None:
    """The log format is what the kubernetes client (and the API server) produce."""
    from kubernetes import client

    api = client.ApiClient()
    service = client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=client.V1ObjectMeta(name="web", namespace="prod"),
        spec=client.V1ServiceSpec(
            cluster_ip="10.96.1.1",
            ports=[client.V1ServicePort(name="http", port=80, protocol="TCP", target_port=8080)],
        ),
    )
    endpoint_slice = client.V1EndpointSlice(
        api_version="discovery.k8s.io/v1",
        kind="EndpointSlice",
        address_type="IPv4",
        metadata=client.V1ObjectMeta(
            name="web-1", namespace="prod", labels={"kubernetes.io/service-name": "web"}
        ),
        endpoints=[
            client.V1Endpoint(
                addresses=["10.244.1.2"], conditions=client.V1EndpointConditions(ready=True)
            )
        ],
        ports=[client.DiscoveryV1EndpointPort(name="http", port=8080, protocol="TCP")],
    )
    svc_event = decode_line(line("ADDED", api.sanitize_for_serialization(service)))
    slice_event = decode_line(line("ADDED", api.sanitize_for_serialization(endpoint_slice)))
    assert isinstance(svc_event, ServiceEvent) and svc_event.ports[0].port == 80
    assert isinstance(slice_event, SliceEvent)
    assert slice_event.data.endpoints[0].ip == "10.244.1.2"
    assert slice_event.data.ports[0].port == 8080
