"""Value types shared by the fold, the change tracker and every renderer."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


class Protocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"

    @property
    def lower(self) -> str:
        return self.value.lower()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Protocol):
            return NotImplemented
        return self.value < other.value


# Names are dict keys on every hot path; as NamedTuples they hash and compare in C.
class NamespacedName(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ServicePortName(NamedTuple):
    """kube-proxy's ServicePortName: a service, one of its port names, and the protocol."""

    service: NamespacedName
    port_name: str
    protocol: Protocol

    def __str__(self) -> str:
        # Same as ServicePortName.String(): no ":" when the port is unnamed.
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.service}{suffix}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """Everything kube-proxy's servicePortInfo keeps about one port of one service."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    # Seconds of ClientIP session affinity; None when affinity is off.
    affinity_timeout_s: int | None = None
    internal_policy_local: bool = False
    external_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_ips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (
            self.external_policy_local and self.externally_accessible
        )


class Endpoint(NamedTuple):
    """One address:port of a service port, with the EndpointSlice conditions kube-proxy reads.

    A NamedTuple rather than a frozen dataclass: a 10,000-service replay builds 100,000 of
    them, and tuples build several times faster.
    """

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    is_local: bool = False

    @property
    def key(self) -> str:
        # BaseEndpointInfo.String(): kube-proxy sorts endpoints by this string.
        return f"{self.ip}:{self.port}"
