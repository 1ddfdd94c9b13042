"""Chain names and probabilities must be kube-proxy's, byte for byte."""

import pytest

from reconciler.iptables import names
from reconciler.model import NamespacedName, Protocol, ServicePortName


def spn(ns: str, name: str, port: str, proto: Protocol = Protocol.TCP) -> ServicePortName:
    return ServicePortName(NamespacedName(ns, name), port, proto)


@pytest.mark.parametrize(
    ("port_name", "expected"),
    [
        # From the seed article's real iptables-save (minikube).
        (spn("default", "nginx-service", ""), "V2OKYYMBY3REGZOG"),
        (spn("default", "kubernetes", "https"), "NPX46M4PTMTKRN6Y"),
        (spn("kube-system", "kube-dns", "dns", Protocol.UDP), "TCOU7JCQXEZGVUNU"),
        (spn("kube-system", "kube-dns", "dns-tcp"), "ERIFXISQEP7F7OF4"),
        (spn("kube-system", "kube-dns", "metrics"), "JD5MR3NA4I4DYORP"),
        # From kube-proxy's own unit tests.
        (spn("ns1", "svc1", "p80"), "XPGD46QRK7WJZT7O"),
    ],
)
def test_service_chain_hash(port_name: ServicePortName, expected: str) -> None:
    assert names.port_proto_hash(port_name) == expected


@pytest.mark.parametrize(
    ("svc", "proto", "endpoint", "expected"),
    [
        ("default/nginx-service", "tcp", "10.244.0.27:80", "KUBE-SEP-POZMZY2HDLRATSJV"),
        ("default/nginx-service", "tcp", "10.244.0.28:80", "KUBE-SEP-Z3HXRORN5VDCFRJU"),
        ("default/nginx-service", "tcp", "10.244.0.30:80", "KUBE-SEP-S46ZL6MIFVWDY42O"),
        ("ns1/svc1:p80", "tcp", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ],
)
def test_endpoint_chain_name(svc: str, proto: str, endpoint: str, expected: str) -> None:
    assert names.endpoint_chain(svc, proto, endpoint) == expected


def test_unnamed_port_has_no_colon() -> None:
    assert str(spn("default", "nginx-service", "")) == "default/nginx-service"
    assert str(spn("ns1", "svc1", "p80")) == "ns1/svc1:p80"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, "1.0000000000"),
        (2, "0.5000000000"),
        (3, "0.3333333333"),
        (7, "0.1428571429"),
        (1000, "0.0010000000"),
        (1500, "0.0006666667"),
    ],
)
def test_probability_strings(n: int, expected: str) -> None:
    assert names.probability(n) == expected


def test_service_chain_prefixes() -> None:
    assert names.is_service_chain("KUBE-SEP-ABC")
    assert names.is_service_chain("KUBE-FW-ABC")
    assert not names.is_service_chain("KUBE-SERVICES")
    assert not names.is_service_chain("KUBE-MARK-MASQ")
