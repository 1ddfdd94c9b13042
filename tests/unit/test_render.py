"""The rendered iptables-restore input: kube-proxy's chains, rules and partial-sync behaviour."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.iptables.fake import FakeIptables
from reconciler.iptables.proxier import IptablesProxier
from reconciler.iptables.render import IptablesConfig, render
from reconciler.state import ClusterState
from tests.helpers import EndpointSpec, PortSpec, eps, fold, svc, watch_event

DATA = Path(__file__).parent.parent / "data"
SEED_CONFIG = IptablesConfig(cluster_cidr="10.244.0.0/16")
# The conventions of kube-proxy's own unit tests: pod CIDR 10.0.0.0/8, and a fake
# iptables without --random-fully.
UPSTREAM_CONFIG = IptablesConfig(cluster_cidr="10.0.0.0/8", random_fully=False)


def canonical(text: str) -> dict[str, tuple[set[str], dict[str, list[str]], set[str]]]:
    """Per table: declared chains, rules per chain (in order) and deleted chains.

    Chain and rule interleaving differ between kube-proxy (Go map order) and us (sorted),
    so this is the order-free form kube-proxy's tests also compare. Jump rules into the
    built-in chains (-I) are left out: kube-proxy installs those outside the restore.
    """
    out: dict[str, tuple[set[str], dict[str, list[str]], set[str]]] = {}
    chains: set[str] = set()
    rules: dict[str, list[str]] = {}
    deleted: set[str] = set()
    for line in text.splitlines():
        if line.startswith("*"):
            chains, rules, deleted = set(), {}, set()
            out[line[1:]] = (chains, rules, deleted)
        elif line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            chain = line.split()[1]
            rules.setdefault(chain, []).append(line)
        elif line.startswith("-X "):
            deleted.add(line.split()[1])
    return out


def seed_state() -> ClusterState:
    from reconciler.logreader import LogReader

    reader = LogReader(DATA / "seed.jsonl")
    state = ClusterState()
    state.apply_all(reader.read_available(at_eof=True))
    reader.close()
    state.drain()
    return state


def test_seed_cluster_renders_the_seed_chain_names() -> None:
    text = render(seed_state(), SEED_CONFIG).text
    for chain in [
        "KUBE-SVC-V2OKYYMBY3REGZOG",
        "KUBE-SEP-POZMZY2HDLRATSJV",
        "KUBE-SEP-Z3HXRORN5VDCFRJU",
        "KUBE-SEP-S46ZL6MIFVWDY42O",
        "KUBE-SVC-NPX46M4PTMTKRN6Y",
        "KUBE-SVC-TCOU7JCQXEZGVUNU",
        "KUBE-SVC-ERIFXISQEP7F7OF4",
        "KUBE-SVC-JD5MR3NA4I4DYORP",
    ]:
        assert f":{chain} - [0:0]" in text
    svc_rules = [l for l in text.splitlines() if l.startswith("-A KUBE-SVC-V2OKYYMBY3REGZOG")]
    assert svc_rules == [
        '-A KUBE-SVC-V2OKYYMBY3REGZOG -m comment --comment "default/nginx-service cluster IP" -m tcp -p tcp -d 10.101.57.97 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ',
        '-A KUBE-SVC-V2OKYYMBY3REGZOG -m comment --comment "default/nginx-service -> 10.244.0.27:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-POZMZY2HDLRATSJV',
        '-A KUBE-SVC-V2OKYYMBY3REGZOG -m comment --comment "default/nginx-service -> 10.244.0.28:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-Z3HXRORN5VDCFRJU',
        '-A KUBE-SVC-V2OKYYMBY3REGZOG -m comment --comment "default/nginx-service -> 10.244.0.30:80" -j KUBE-SEP-S46ZL6MIFVWDY42O',
    ]
    sep = [l for l in text.splitlines() if l.startswith("-A KUBE-SEP-POZMZY2HDLRATSJV")]
    assert sep == [
        "-A KUBE-SEP-POZMZY2HDLRATSJV -m comment --comment default/nginx-service -s 10.244.0.27 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-POZMZY2HDLRATSJV -m comment --comment default/nginx-service -m tcp -p tcp -j DNAT --to-destination 10.244.0.27:80",
    ]


def test_seed_render_matches_the_golden_file() -> None:
    # Regenerate with: python -m reconciler render --log tests/data/seed.jsonl
    #   --mode iptables --cluster-cidr 10.244.0.0/16 > tests/data/seed.iptables-restore
    assert render(seed_state(), SEED_CONFIG).text == (DATA / "seed.iptables-restore").read_text()


def test_same_log_renders_the_same_bytes() -> None:
    assert render(seed_state(), SEED_CONFIG).text == render(seed_state(), SEED_CONFIG).text


def test_nodeports_rule_is_last_in_kube_services() -> None:
    nat = render(seed_state(), SEED_CONFIG).text.split("*nat")[1]
    services = [l for l in nat.splitlines() if l.startswith("-A KUBE-SERVICES")]
    assert services[-1] == (
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be'
        ' the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )


class TestRepeatedSyncsLikeKubeProxy:
    """The sequence of kube-proxy's TestSyncProxyRulesRepeated, with its expected chains."""

    def setup_method(self) -> None:
        self.state = ClusterState()
        self.fake = FakeIptables()
        self.proxier = IptablesProxier(self.state, self.fake, UPSTREAM_CONFIG)

    def sync(
        self, *events: dict[str, object]
    ) -> tuple[str, dict[str, tuple[set[str], dict[str, list[str]], set[str]]]]:
        fold(events, self.state)
        outcome = self.proxier.sync()
        assert outcome is not None
        return outcome.metrics.sync, canonical(outcome.rendered.text)

    def test_sequence(self) -> None:
        top_nat = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"}
        kind, out = self.sync(
            svc("svc1", "172.30.0.41"),
            eps("svc1", ["10.0.1.1"]),
            svc("svc2", "172.30.0.42", [PortSpec(8080, "p8080")], namespace="ns2"),
            eps("svc2", ["10.0.2.1"], [PortSpec(8080, "p8080")], namespace="ns2"),
        )
        assert kind == "full"
        chains, rules, _ = out["nat"]
        assert chains == top_nat | {
            "KUBE-SEP-SNQ3ZNILQDEJNDQO",
            "KUBE-SEP-UHEGFW77JX3KXTOV",
            "KUBE-SVC-2VJB64SDSIJUP5T6",
            "KUBE-SVC-XPGD46QRK7WJZT7O",
        }
        assert rules["KUBE-SVC-2VJB64SDSIJUP5T6"] == [
            '-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
            '-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV',
        ]
        assert rules["KUBE-SEP-UHEGFW77JX3KXTOV"] == [
            "-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ",
            "-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080",
        ]
        assert rules["KUBE-POSTROUTING"] == [
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
            '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
        ]
        assert rules["KUBE-MARK-MASQ"] == ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
        fchains, frules, _ = out["filter"]
        assert fchains == {
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-FORWARD",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-FIREWALL",
            "KUBE-FIREWALL",
        }
        assert frules["KUBE-FORWARD"] == [
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        ]

        # A new service: a partial sync writes only its chains, and every KUBE-SERVICES rule.
        kind, out = self.sync(
            svc("svc3", "172.30.0.43", namespace="ns3"),
            eps("svc3", ["10.0.3.1"], namespace="ns3"),
        )
        chains, rules, deleted = out["nat"]
        assert kind == "partial"
        assert chains == top_nat | {"KUBE-SEP-BSWRHOQ77KEXZLNL", "KUBE-SVC-X27LE4BHSL4DOUIK"}
        assert [r.split("-j ")[-1] for r in rules["KUBE-SERVICES"]] == [
            "KUBE-SVC-XPGD46QRK7WJZT7O",
            "KUBE-SVC-2VJB64SDSIJUP5T6",
            "KUBE-SVC-X27LE4BHSL4DOUIK",
            "KUBE-NODEPORTS",
        ]
        assert not deleted

        # Deleting a service deletes its chains (flushed by their chain line, then -X).
        kind, out = self.sync(
            watch_event("DELETED", svc("svc2", "172.30.0.42", namespace="ns2")["object"])
        )
        chains, rules, deleted = out["nat"]
        assert chains == top_nat | {"KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6"}
        assert deleted == {"KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6"}
        assert "KUBE-SVC-2VJB64SDSIJUP5T6" not in rules

        # A service without endpoints gets a filter REJECT and no nat chains.
        kind, out = self.sync(svc("svc4", "172.30.0.44", namespace="ns4"))
        assert out["nat"][0] == top_nat
        assert out["filter"][1]["KUBE-SERVICES"] == [
            '-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j REJECT',
        ]
        kind, out = self.sync(eps("svc4", ["10.0.4.1"], namespace="ns4"))
        assert out["nat"][0] == top_nat | {"KUBE-SVC-4SW47YFZTEDKD3PK", "KUBE-SEP-AYCN5HPXMIRJNJXU"}
        assert "KUBE-SERVICES" not in out["filter"][1]

        # A changed endpoint: the service's chains are rewritten, the old SEP deleted.
        kind, out = self.sync(eps("svc3", ["10.0.3.2"], namespace="ns3", event="MODIFIED"))
        chains, rules, deleted = out["nat"]
        assert chains == top_nat | {
            "KUBE-SEP-BSWRHOQ77KEXZLNL",
            "KUBE-SEP-DKCFIS26GWF2WLWC",
            "KUBE-SVC-X27LE4BHSL4DOUIK",
        }
        assert deleted == {"KUBE-SEP-BSWRHOQ77KEXZLNL"}
        assert rules["KUBE-SVC-X27LE4BHSL4DOUIK"][-1] == (
            '-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -j KUBE-SEP-DKCFIS26GWF2WLWC'
        )
        # The fake kernel, which validates like iptables-restore, ends with exactly these chains.
        kernel = set(self.fake.tables["nat"].chains)
        assert {c for c in kernel if c.startswith("KUBE-S")} == {
            "KUBE-SERVICES",
            "KUBE-SVC-XPGD46QRK7WJZT7O",
            "KUBE-SEP-SNQ3ZNILQDEJNDQO",
            "KUBE-SVC-X27LE4BHSL4DOUIK",
            "KUBE-SEP-DKCFIS26GWF2WLWC",
            "KUBE-SVC-4SW47YFZTEDKD3PK",
            "KUBE-SEP-AYCN5HPXMIRJNJXU",
        }


def test_partial_sync_at_scale_writes_only_the_changed_service() -> None:
    events: list[dict[str, object]] = []
    for i in range(300):
        events += [
            svc(f"s{i}", f"10.96.1.{i % 250}", namespace=f"n{i}"),
            eps(f"s{i}", [f"10.1.{i // 250}.{i % 250}", "10.2.0.1"], namespace=f"n{i}"),
        ]
    state = fold(events)
    state.drain()
    full = render(state, SEED_CONFIG)
    fold([eps("s7", ["10.1.0.7", "10.2.0.2"], namespace="n7", event="MODIFIED")], state)
    changed = state.drain()
    partial = render(
        state, SEED_CONFIG, changed=changed, previous=full.port_chains, missing_jumps=()
    )
    declared = {
        l[1:].split()[0] for l in partial.text.split("*nat")[1].splitlines() if l.startswith(":")
    }
    per_service = {c for c in declared if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
    own = set(
        full.port_chains[next(iter(p for p in full.port_chains if p.service.name == "s7"))].chains
    )
    assert per_service == own | {
        c
        for c in partial.port_chains[
            next(p for p in partial.port_chains if p.service.name == "s7")
        ].chains
    }
    assert len(per_service) == 4  # SVC + 2 SEPs written, 1 old SEP flushed for deletion
    assert partial.deleted_chains and len(partial.deleted_chains) == 1
    assert partial.text.count("-A KUBE-SERVICES") == 301  # all top-level rules, every sync
    assert partial.rules_total == full.rules_total


def test_large_cluster_mode_drops_endpoint_comments() -> None:
    events = [
        svc("big", "10.96.0.5"),
        eps("big", [f"10.1.{i // 250}.{i % 250}" for i in range(1001)]),
    ]
    state = fold(events)
    state.drain()
    text = render(state, SEED_CONFIG).text
    assert re.search(r"^-A KUBE-SEP-\w+ -s 10\.1\.0\.0 -j KUBE-MARK-MASQ$", text, re.M)
    assert "-> 10.1.0.0:80" not in text
    assert '--comment "ns1/big:p80 cluster IP"' in text  # top-level comments stay


def test_nodeport_uses_an_external_chain() -> None:
    state = fold(
        [
            svc("np", "172.30.0.41", [PortSpec(80, "p80", node_port=3001)], type_="NodePort"),
            eps("np", ["10.180.0.1", "10.180.0.2"]),
        ]
    )
    state.drain()
    text = render(state, UPSTREAM_CONFIG).text
    assert (
        "-A KUBE-NODEPORTS -m comment --comment ns1/np:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-"
        in text
    )
    ext = [l for l in text.splitlines() if l.startswith("-A KUBE-EXT-")]
    assert [l.split(" ", 2)[2] for l in ext] == [
        '-m comment --comment "masquerade traffic for ns1/np:p80 external destinations" -j KUBE-MARK-MASQ',
        f"-j {ext[0].split()[1].replace('KUBE-EXT-', 'KUBE-SVC-')}",
    ]


def test_no_endpoints_with_nodeport_rejects_in_both_filter_chains() -> None:
    state = fold(
        [svc("np", "172.30.0.41", [PortSpec(80, "p80", node_port=3001)], type_="NodePort")]
    )
    state.drain()
    text = render(state, UPSTREAM_CONFIG).text
    assert (
        '-A KUBE-SERVICES -m comment --comment "ns1/np:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT'
        in text
    )
    assert (
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/np:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT'
        in text
    )


def test_session_affinity_rules() -> None:
    state = fold(
        [
            svc("aff", "172.30.0.41", session_affinity_timeout=300),
            eps("aff", ["10.0.1.1", "10.0.1.2"]),
        ]
    )
    state.drain()
    text = render(state, UPSTREAM_CONFIG).text
    svc_rules = [l for l in text.splitlines() if l.startswith("-A KUBE-SVC-")]
    assert "-m recent --name KUBE-SEP-" in svc_rules[1]
    assert svc_rules[1].endswith(
        "--rcheck --seconds 300 --reap -j " + svc_rules[1].split("--name ")[1].split()[0]
    )
    assert "--probability 0.5000000000" in svc_rules[3]
    assert any(
        "-m recent --name KUBE-SEP-" in l and "--set -m tcp -p tcp -j DNAT" in l
        for l in text.splitlines()
    )


@pytest.mark.parametrize("liberal", [False, True])
def test_invalid_drop_follows_tcp_be_liberal(liberal: bool) -> None:
    state = fold([])
    text = render(state, IptablesConfig(conntrack_tcp_liberal=liberal)).text
    assert ("--ctstate INVALID -j DROP" in text) is not liberal


def test_unready_endpoints_fall_back_to_terminating_ones() -> None:
    state = fold(
        [
            svc("t", "172.30.0.41"),
            eps(
                "t",
                [
                    EndpointSpec("10.0.1.1", ready=False, serving=True, terminating=True),
                    EndpointSpec("10.0.1.2", ready=False, serving=False, terminating=True),
                ],
            ),
        ]
    )
    state.drain()
    text = render(state, UPSTREAM_CONFIG).text
    assert "DNAT --to-destination 10.0.1.1:80" in text
    assert "10.0.1.2" not in text
