"""Decode and validate one line of the watch-event log into a typed event (no I/O, no kernel)."""

from __future__ import annotations

import ipaddress
import re
import socket
from enum import Enum
from typing import Any, NamedTuple

import orjson

from reconciler.errors import InvalidEvent
from reconciler.model import NamespacedName, Protocol, ServicePort, ServicePortName

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT_S = 10800  # v1.DefaultClientIPServiceAffinitySeconds
MAX_AFFINITY_TIMEOUT_S = 86400

_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\Z"
)
_is_ipv4 = _IPV4.match
_PROTOCOLS = {p.value: p for p in Protocol}


class EventType(Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


_EVENT_TYPES = {t.value: t for t in EventType}


# Slices are the bulk of a replay: these two are NamedTuples, which build several times
# faster than frozen dataclasses and are just as immutable.
class SlicePort(NamedTuple):
    name: str
    protocol: Protocol
    port: int


class SliceEndpoint(NamedTuple):
    ip: str
    ready: bool
    serving: bool
    terminating: bool
    node_name: str


class SliceData(NamedTuple):
    """The parts of an EndpointSlice kube-proxy uses; IPv4 slices only (an IPv4 proxier)."""

    ports: tuple[SlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...]


class ServiceEvent(NamedTuple):
    type: EventType
    service: NamespacedName
    # Empty for headless, ExternalName and IPv6-only services: kube-proxy gives them no rules.
    ports: tuple[ServicePort, ...]


class SliceEvent(NamedTuple):
    type: EventType
    service: NamespacedName
    slice_name: str
    data: SliceData


Event = ServiceEvent | SliceEvent


def decode_line(line: bytes | str) -> Event | None:
    """One log line to an event; None for BOOKMARK and blank lines. Raises InvalidEvent."""
    if not line.strip():
        return None
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("a watch event must be a JSON object")
    etype = doc.get("type")
    if etype == "BOOKMARK":
        return None
    event_type = _EVENT_TYPES.get(etype) if isinstance(etype, str) else None
    if event_type is None:
        raise InvalidEvent(
            f"unknown event type {etype!r} (expected ADDED, MODIFIED, DELETED or BOOKMARK)"
        )
    obj = doc.get("object")
    if not isinstance(obj, dict):
        raise InvalidEvent("event has no 'object'")
    kind = obj.get("kind")
    if kind == "Service":
        _check_api_version(obj, "v1", kind)
        return decode_service(obj, event_type)
    if kind == "EndpointSlice":
        _check_api_version(obj, "discovery.k8s.io/v1", kind)
        return decode_slice(obj, event_type)
    raise InvalidEvent(f"unsupported kind {kind!r} (expected Service or EndpointSlice)")


def _check_api_version(obj: dict[str, Any], expected: str, kind: str) -> None:
    version = obj.get("apiVersion", expected)
    if version != expected:
        raise InvalidEvent(f"{kind} has apiVersion {version!r}, expected {expected!r}")


def _identity(obj: dict[str, Any], kind: str) -> tuple[str, str, dict[str, Any]]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidEvent(f"{kind} has no metadata")
    name = meta.get("name")
    namespace = meta.get("namespace")
    if not isinstance(name, str) or not name:
        raise InvalidEvent(f"{kind} has no metadata.name")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidEvent(f"{kind} {name!r} has no metadata.namespace")
    return namespace, name, meta


_valid_ipv4: set[str] = set()  # addresses seen valid: pod IPs recur in every churned slice


def ip_family(value: Any, where: str, field: str = "") -> int:
    """4 or 6 for a valid IP address string; InvalidEvent naming where and field otherwise.

    Messages are formatted only on error: this runs for every address of every event.
    """
    if isinstance(value, str):
        if value in _valid_ipv4:
            return 4
        if _is_ipv4(value):
            if len(_valid_ipv4) > 1 << 20:
                _valid_ipv4.clear()
            _valid_ipv4.add(value)
            return 4
        if ":" in value:
            try:
                socket.inet_pton(socket.AF_INET6, value)
                return 6
            except OSError:
                pass
    raise InvalidEvent(f"invalid IP address {value!r} in {where} {field}".rstrip())


def _port(value: Any, where: str, field: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise InvalidEvent(f"invalid port {value!r} in {where} {field}")
    return value


def _protocol(value: Any, where: str, field: str) -> Protocol:
    if value is None:
        return Protocol.TCP
    proto = _PROTOCOLS.get(value) if isinstance(value, str) else None
    if proto is None:
        raise InvalidEvent(f"invalid protocol {value!r} in {where} {field}")
    return proto


def _list(value: Any, where: str, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidEvent(f"{where} {field} must be a list")
    return value


def decode_service(obj: dict[str, Any], event_type: EventType) -> ServiceEvent:
    namespace, name, _ = _identity(obj, "Service")
    key = NamespacedName(namespace, name)
    where = f"Service {namespace}/{name}"
    if event_type is EventType.DELETED:
        return ServiceEvent(event_type, key, ())
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise InvalidEvent(f"{where} has no spec")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise InvalidEvent(f"{where} has unknown type {svc_type!r}")

    ports_spec = _list(spec.get("ports"), where, "spec.ports")
    cluster_ip = _cluster_ipv4(spec, where)
    # proxyutil.ShouldSkipService: headless and ExternalName services get no rules; an
    # IPv4 proxier also skips services with no IPv4 ClusterIP. Ports are validated anyway.
    parsed_ports = [_service_port_fields(p, where) for p in ports_spec]
    if svc_type == "ExternalName" or cluster_ip is None:
        return ServiceEvent(event_type, key, ())

    external_ips = tuple(
        ip
        for ip in _list(spec.get("externalIPs"), where, "spec.externalIPs")
        if ip_family(ip, where, "spec.externalIPs") == 4
    )
    lb_ips = _load_balancer_ips(obj, where) if svc_type == "LoadBalancer" else ()
    source_ranges = tuple(
        _cidr(c, where, "spec.loadBalancerSourceRanges")
        for c in _list(spec.get("loadBalancerSourceRanges"), where, "spec.loadBalancerSourceRanges")
    )
    source_ranges = tuple(c for c in source_ranges if ":" not in c)
    affinity = _affinity_timeout(spec, where)
    externally_accessible = svc_type in ("NodePort", "LoadBalancer") or bool(
        spec.get("externalIPs")
    )
    external_local = externally_accessible and spec.get("externalTrafficPolicy") == "Local"
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    health_check = 0
    if svc_type == "LoadBalancer" and external_local:
        health_check = _port(
            spec.get("healthCheckNodePort", 0),
            where,
            "spec.healthCheckNodePort",
            allow_zero=True,
        )
    ports = tuple(
        ServicePort(
            name=ServicePortName(key, port_name, protocol),
            cluster_ip=cluster_ip,
            port=port,
            node_port=node_port,
            external_ips=external_ips,
            load_balancer_ips=lb_ips,
            load_balancer_source_ranges=source_ranges,
            affinity_timeout_s=affinity,
            internal_policy_local=internal_local,
            external_policy_local=external_local,
            health_check_node_port=health_check,
        )
        for port_name, protocol, port, node_port in parsed_ports
    )
    return ServiceEvent(event_type, key, ports)


def _cluster_ipv4(spec: dict[str, Any], where: str) -> str | None:
    primary = spec.get("clusterIP")
    if primary in (None, "", "None"):
        return None
    candidates = _list(spec.get("clusterIPs"), where, "spec.clusterIPs") or [primary]
    for ip in [primary, *candidates]:
        if ip_family(ip, where, "spec.clusterIP") == 4:
            return str(ip)
    return None


def _service_port_fields(port_spec: Any, where: str) -> tuple[str, Protocol, int, int]:
    if not isinstance(port_spec, dict):
        raise InvalidEvent(f"{where} spec.ports entries must be objects")
    name = port_spec.get("name") or ""
    if not isinstance(name, str):
        raise InvalidEvent(f"invalid port name {name!r} in {where} spec.ports")
    protocol = _protocol(port_spec.get("protocol"), where, "spec.ports")
    port = _port(port_spec.get("port"), where, "spec.ports")
    node_port = _port(port_spec.get("nodePort", 0), where, "spec.ports nodePort", allow_zero=True)
    return name, protocol, port, node_port


def _load_balancer_ips(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    status = obj.get("status")
    lb = (status.get("loadBalancer") or {}) if isinstance(status, dict) else {}
    if not isinstance(lb, dict):
        raise InvalidEvent(f"{where} status.loadBalancer must be an object")
    ips = []
    for ingress in _list(lb.get("ingress"), where, "status.loadBalancer.ingress"):
        if not isinstance(ingress, dict) or not ingress.get("ip"):
            continue
        # An ingress IP in "Proxy" mode is not a VIP kube-proxy may capture (IsVIPMode).
        if ingress.get("ipMode") == "Proxy":
            continue
        if ip_family(ingress["ip"], where, "status.loadBalancer.ingress") == 4:
            ips.append(ingress["ip"])
    return tuple(ips)


def _cidr(value: Any, where: str, field: str) -> str:
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise InvalidEvent(f"invalid CIDR {value!r} in {where} {field}") from None


def _affinity_timeout(spec: dict[str, Any], where: str) -> int | None:
    affinity = spec.get("sessionAffinity") or "None"
    if affinity == "None":
        return None
    if affinity != "ClientIP":
        raise InvalidEvent(f"{where} has unknown sessionAffinity {affinity!r}")
    config = spec.get("sessionAffinityConfig")
    client_ip = (config.get("clientIP") or {}) if isinstance(config, dict) else {}
    if not isinstance(client_ip, dict):
        raise InvalidEvent(f"{where} spec.sessionAffinityConfig.clientIP must be an object")
    timeout = client_ip.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 0 < timeout <= MAX_AFFINITY_TIMEOUT_S
    ):
        raise InvalidEvent(f"{where} has invalid sessionAffinity timeoutSeconds {timeout!r}")
    return timeout


def decode_slice(obj: dict[str, Any], event_type: EventType) -> SliceEvent:
    namespace, name, meta = _identity(obj, "EndpointSlice")
    labels = meta.get("labels")
    service_name = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, dict) else None
    if not isinstance(service_name, str) or not service_name:
        raise InvalidEvent(f"EndpointSlice {namespace}/{name} has no {SERVICE_NAME_LABEL} label")
    service = NamespacedName(namespace, service_name)
    if event_type is EventType.DELETED:
        return SliceEvent(event_type, service, name, SliceData((), ()))
    what = f"EndpointSlice {namespace}/{name}"
    address_type = obj.get("addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise InvalidEvent(f"{what} has invalid addressType {address_type!r}")

    ports = []
    for entry in _list(obj.get("ports"), what, "ports"):
        if not isinstance(entry, dict):
            raise InvalidEvent(f"{what} ports entries must be objects")
        port_name = entry.get("name") or ""
        protocol = _protocol(entry.get("protocol"), what, "ports")
        port = entry.get("port")
        if port is None:  # kube-proxy ignores a slice port without a number
            continue
        ports.append(SlicePort(port_name, protocol, _port(port, what, "ports")))

    endpoints: list[SliceEndpoint] = []
    if address_type == "IPv4":
        _decode_ipv4_endpoints(_list(obj.get("endpoints"), what, "endpoints"), what, endpoints)
    else:
        # Valid, but not for an IPv4 proxier: checked, then ignored like kube-proxy does.
        for entry in _list(obj.get("endpoints"), what, "endpoints"):
            for address in _addresses(entry, what):
                if address_type != "FQDN":
                    ip_family(address, what, "endpoints")
    if address_type != "IPv4":
        return SliceEvent(event_type, service, name, SliceData((), ()))
    return SliceEvent(event_type, service, name, SliceData(tuple(ports), tuple(endpoints)))


def _addresses(entry: Any, what: str) -> list[Any]:
    addresses = entry.get("addresses") if isinstance(entry, dict) else None
    if not isinstance(addresses, list) or not addresses:
        raise InvalidEvent(f"{what} has an endpoint without addresses")
    return addresses


_new_tuple = tuple.__new__


def _decode_ipv4_endpoints(raw: list[Any], what: str, out: list[SliceEndpoint]) -> None:
    """The hottest loop of a replay: kept flat and inlined, with the common path first."""
    valid = _valid_ipv4
    append = out.append
    new = _new_tuple
    cls = SliceEndpoint
    for entry in raw:
        addresses = entry.get("addresses") if type(entry) is dict else None
        if type(addresses) is not list or not addresses:
            raise InvalidEvent(f"{what} has an endpoint without addresses")
        for address in addresses:
            if address not in valid and ip_family(address, what, "endpoints") != 4:
                raise InvalidEvent(f"IPv6 address {address!r} in IPv4 {what}")
        conditions = entry.get("conditions")
        node_name = entry.get("nodeName")
        if type(node_name) is not str:
            node_name = ""
        # kube-proxy uses only the first address of an endpoint.
        if conditions:
            ready = conditions.get("ready")
            serving = conditions.get("serving")
            append(
                new(
                    cls,
                    (
                        addresses[0],
                        ready is None or ready is True,
                        serving is None or serving is True,
                        conditions.get("terminating") is True,
                        node_name,
                    ),
                )
            )
        else:
            append(new(cls, (addresses[0], True, True, False, node_name)))
