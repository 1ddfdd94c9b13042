"""Build Service/EndpointSlice watch events in the API server's JSON form, and write logs of them."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class PortSpec:
    port: int
    name: str = ""
    protocol: str = "TCP"
    target_port: int | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class EndpointSpec:
    ip: str
    ready: bool | None = True
    serving: bool | None = None
    terminating: bool | None = None
    node_name: str | None = None
    pod_name: str | None = None


def service_object(
    namespace: str,
    name: str,
    cluster_ip: str,
    ports: Sequence[PortSpec],
    *,
    type_: str = "ClusterIP",
    session_affinity_timeout: int | None = None,
    external_ips: Sequence[str] = (),
    extra_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": type_,
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "ipFamilies": ["IPv4"],
        "ports": [_service_port(p) for p in ports],
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }
    if type_ in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = "Cluster"
    if session_affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": session_affinity_timeout}}
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    spec.update(extra_spec or {})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def _service_port(p: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "port": p.port,
        "protocol": p.protocol,
        "targetPort": p.target_port or p.port,
    }
    if p.name:
        out["name"] = p.name
    if p.node_port:
        out["nodePort"] = p.node_port
    return out


def endpoint_slice_object(
    namespace: str,
    service: str,
    slice_name: str,
    endpoints: Sequence[EndpointSpec],
    ports: Sequence[PortSpec],
) -> dict[str, Any]:
    eps = []
    for ep in endpoints:
        conditions = {
            k: v
            for k, v in (
                ("ready", ep.ready),
                ("serving", ep.serving),
                ("terminating", ep.terminating),
            )
            if v is not None
        }
        entry: dict[str, Any] = {"addresses": [ep.ip], "conditions": conditions}
        if ep.node_name:
            entry["nodeName"] = ep.node_name
        if ep.pod_name:
            entry["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": ep.pod_name}
        eps.append(entry)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": namespace,
            "labels": {SERVICE_NAME_LABEL: service},
        },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [
            {"name": p.name, "port": p.target_port or p.port, "protocol": p.protocol} for p in ports
        ],
    }


def watch_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "object": obj}


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event) + b"\n"


def write_log(path: Path, events: Iterable[dict[str, Any]]) -> int:
    """Write events as JSON Lines; returns how many."""
    count = 0
    with path.open("wb") as fh:
        for event in events:
            fh.write(encode(event))
            count += 1
    return count


@dataclass
class SyntheticCluster:
    """A reproducible cluster of `services` x `endpoints` (ClusterIP, one TCP port each)."""

    services: int
    endpoints_per_service: int
    seed: int = 1
    namespace: str = "bench"
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @staticmethod
    def cluster_ip(i: int) -> str:
        return (
            f"10.96.{(i >> 8) & 0xFF}.{i & 0xFF}"
            if i < 65536
            else f"10.97.{(i >> 8) & 0xFF}.{i & 0xFF}"
        )

    @staticmethod
    def pod_ip(n: int) -> str:
        if n >= 12 << 16:
            raise ValueError(f"pod number {n} is beyond 10.255.255.255")
        return f"10.{244 + (n >> 16)}.{(n >> 8) & 0xFF}.{n & 0xFF}"

    def service_name(self, i: int) -> str:
        return f"svc-{i:05d}"

    def slice_for(self, i: int, pod_numbers: Sequence[int]) -> dict[str, Any]:
        port = PortSpec(80, name="http", target_port=8080)
        eps = [EndpointSpec(self.pod_ip(n), node_name="node-1") for n in pod_numbers]
        name = self.service_name(i)
        return endpoint_slice_object(self.namespace, name, f"{name}-abcde", eps, [port])

    def initial_events(self) -> Iterator[dict[str, Any]]:
        port = PortSpec(80, name="http", target_port=8080)
        for i in range(self.services):
            name = self.service_name(i)
            yield watch_event(
                "ADDED", service_object(self.namespace, name, self.cluster_ip(i), [port])
            )
            first = i * self.endpoints_per_service + 1
            pods = range(first, first + self.endpoints_per_service)
            yield watch_event("ADDED", self.slice_for(i, list(pods)))

    def replace_one_endpoint(self, i: int, new_pod: int) -> dict[str, Any]:
        """A MODIFIED slice of service i where its first pod was replaced by `new_pod`."""
        first = i * self.endpoints_per_service + 1
        pods = [new_pod, *range(first + 1, first + self.endpoints_per_service)]
        return watch_event("MODIFIED", self.slice_for(i, pods))
