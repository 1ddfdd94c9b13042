"""Values of ipvs mode: virtual servers, real servers, the ipsets kube-proxy keeps."""

from __future__ import annotations

from typing import NamedTuple

# IPVS forwarding method for masquerading (IP_VS_CONN_F_MASQ); pyroute2 defaults to 3 (DR).
FWD_MASQ = 0
# Persistent service flag (IP_VS_SVC_F_PERSISTENT): ClientIP session affinity.
FLAG_PERSISTENT = 0x0001
PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOL_NUMBERS.items()}
DUMMY_DEVICE = "kube-ipvs0"


class ServiceKey(NamedTuple):
    protocol: str  # "TCP", "UDP" or "SCTP"
    ip: str
    port: int

    def ipvsadm(self) -> str:
        flag = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[self.protocol]
        return f"{flag} {self.ip}:{self.port}"


class VirtualServer(NamedTuple):
    key: ServiceKey
    scheduler: str
    # Seconds of persistence for ClientIP affinity; 0 when off.
    timeout: int = 0


class RealServer(NamedTuple):
    ip: str
    port: int


class IpvsTable(NamedTuple):
    """Virtual servers and their real servers with weights, as wanted or as the kernel has them."""

    services: dict[ServiceKey, VirtualServer]
    destinations: dict[ServiceKey, dict[RealServer, int]]

    @staticmethod
    def empty() -> IpvsTable:
        return IpvsTable({}, {})


class IpsetInfo(NamedTuple):
    name: str
    type: str
    comment: str


# kube-proxy's ipsets (pkg/proxy/ipvs/ipset.go), all created whatever the services use.
IPSETS = (
    IpsetInfo(
        "KUBE-LOOP-BACK",
        "hash:ip,port,ip",
        "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    ),
    IpsetInfo(
        "KUBE-CLUSTER-IP",
        "hash:ip,port",
        "Kubernetes service cluster ip + port for masquerade purpose",
    ),
    IpsetInfo(
        "KUBE-EXTERNAL-IP",
        "hash:ip,port",
        "Kubernetes service external ip + port for masquerade and filter purpose",
    ),
    IpsetInfo(
        "KUBE-EXTERNAL-IP-LOCAL",
        "hash:ip,port",
        "Kubernetes service external ip + port with externalTrafficPolicy=local",
    ),
    IpsetInfo("KUBE-LOAD-BALANCER", "hash:ip,port", "Kubernetes service lb portal"),
    IpsetInfo(
        "KUBE-LOAD-BALANCER-FW",
        "hash:ip,port",
        "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    ),
    IpsetInfo(
        "KUBE-LOAD-BALANCER-LOCAL",
        "hash:ip,port",
        "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    ),
    IpsetInfo(
        "KUBE-LOAD-BALANCER-SOURCE-IP",
        "hash:ip,port,ip",
        "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    ),
    IpsetInfo(
        "KUBE-LOAD-BALANCER-SOURCE-CIDR",
        "hash:ip,port,net",
        "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    ),
    IpsetInfo(
        "KUBE-NODE-PORT-TCP", "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"
    ),
    IpsetInfo(
        "KUBE-NODE-PORT-LOCAL-TCP",
        "bitmap:port",
        "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    ),
    IpsetInfo(
        "KUBE-NODE-PORT-UDP", "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"
    ),
    IpsetInfo(
        "KUBE-NODE-PORT-LOCAL-UDP",
        "bitmap:port",
        "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    ),
    IpsetInfo(
        "KUBE-NODE-PORT-SCTP-HASH",
        "hash:ip,port",
        "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    ),
    IpsetInfo(
        "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
        "hash:ip,port",
        "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    ),
    IpsetInfo("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port", "Kubernetes health check node port"),
)
IPSET_BY_NAME = {info.name: info for info in IPSETS}


def ipset_create_line(info: IpsetInfo) -> str:
    """The create command as kube-proxy issues it (and `ipset restore` takes it)."""
    if info.type == "bitmap:port":
        return f"create {info.name} {info.type} range 0-65535"
    return f"create {info.name} {info.type} family inet hashsize 1024 maxelem 65536"
