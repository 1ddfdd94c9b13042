"""kube-proxy's iptables chain names and probability strings, byte for byte."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from reconciler.model import ServicePortName

# Top-level chains (pkg/proxy/iptables/proxier.go).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's chain, which kube-proxy also fills

SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def _hash16(text: str) -> str:
    # 16 base32 characters encode exactly the first 10 bytes of the digest.
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


@lru_cache(maxsize=1 << 16)
def port_proto_hash(port_name: ServicePortName) -> str:
    """portProtoHash: base32(sha256("ns/svc:port" + protocol))[:16]."""
    return _hash16(str(port_name) + port_name.protocol.lower)


@lru_cache(maxsize=1 << 18)
def endpoint_chain(port_name_str: str, protocol: str, endpoint: str) -> str:
    """servicePortEndpointChainName: KUBE-SEP- + hash of port name, protocol and "ip:port"."""
    return "KUBE-SEP-" + _hash16(port_name_str + protocol + endpoint)


def is_service_chain(chain: str) -> bool:
    """isServiceChainName: chains kube-proxy owns per service port or endpoint."""
    return chain.startswith(SERVICE_CHAIN_PREFIXES)


_PROBABILITIES = ["<bad value>"] + [f"{1.0 / n:0.10f}" for n in range(1, 1001)]


def probability(n: int) -> str:
    """computeProbability: the chance of picking 1 of the n remaining endpoints, as %0.10f."""
    if n < len(_PROBABILITIES):
        return _PROBABILITIES[n]
    return f"{1.0 / n:0.10f}"
