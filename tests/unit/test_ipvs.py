"""ipvs mode without a kernel: render, diff and the proxier against the validating fake."""

from __future__ import annotations

import pytest

from reconciler.errors import ApplyError
from reconciler.ipvs.diff import Op, diff
from reconciler.ipvs.fake import FakeIpvsKernel
from reconciler.ipvs.model import IpvsTable, RealServer, ServiceKey, VirtualServer
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import IpvsConfig, iptables_rules, ipvsadm_save
from reconciler.state import ClusterState
from tests.helpers import EndpointSpec, PortSpec, eps, fold, svc, watch_event

CONFIG = IpvsConfig(cluster_cidr="10.244.0.0/16")
TCP = ServiceKey("TCP", "10.96.0.1", 80)
UDP = ServiceKey("UDP", "10.96.0.2", 53)


def table(*services: tuple[ServiceKey, dict[str, int]], timeout: int = 0) -> IpvsTable:
    t = IpvsTable.empty()
    for key, dests in services:
        t.services[key] = VirtualServer(key, "rr", timeout)
        t.destinations[key] = {RealServer(ip, 80): w for ip, w in dests.items()}
    return t


@pytest.mark.parametrize(
    ("current", "desired", "expected"),
    [
        (table(), table((TCP, {"10.0.0.1": 1})), ["add_service", "add_dest 10.0.0.1 1"]),
        (table((TCP, {"10.0.0.1": 1})), table((TCP, {"10.0.0.1": 1})), []),
        (
            table((TCP, {"10.0.0.1": 1})),
            table((TCP, {"10.0.0.1": 1, "10.0.0.2": 1})),
            ["add_dest 10.0.0.2 1"],
        ),
        # A TCP real server that goes away is drained first; a UDP one is deleted at once.
        (
            table((TCP, {"10.0.0.1": 1, "10.0.0.2": 1})),
            table((TCP, {"10.0.0.1": 1})),
            ["set_dest 10.0.0.2 0"],
        ),
        (
            table((UDP, {"10.0.0.1": 1, "10.0.0.2": 1})),
            table((UDP, {"10.0.0.1": 1})),
            ["del_dest 10.0.0.2 0"],
        ),
        (table((TCP, {"10.0.0.2": 0})), table((TCP, {"10.0.0.2": 0})), []),  # already draining
        (
            table((TCP, {"10.0.0.2": 0})),
            table((TCP, {"10.0.0.2": 1})),
            ["set_dest 10.0.0.2 1"],
        ),  # back
        (table((TCP, {"10.0.0.1": 1})), table(), ["del_service"]),
        (table((TCP, {})), table((TCP, {}), timeout=30), ["set_service"]),
    ],
)
def test_diff(current: IpvsTable, desired: IpvsTable, expected: list[str]) -> None:
    ops = diff(current, desired, set(current.services) | set(desired.services))
    assert [f"{o.kind} {o.dest.ip} {o.weight}" if o.dest else o.kind for o in ops] == expected


def seed_state() -> ClusterState:
    from pathlib import Path

    from reconciler.logreader import LogReader

    reader = LogReader(Path(__file__).parent.parent / "data" / "seed.jsonl")
    state = ClusterState(node_name="minikube")
    state.apply_all(reader.read_available(at_eof=True))
    reader.close()
    return state


def test_seed_cluster_in_ipvs_mode() -> None:
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(seed_state(), fake, CONFIG)
    assert proxier.sync() is not None
    saved = ipvsadm_save(fake.table)
    assert "-A -t 10.101.57.97:80 -s rr\n" in saved
    for ip in ("10.244.0.27", "10.244.0.28", "10.244.0.30"):
        assert f"-a -t 10.101.57.97:80 -r {ip}:80 -m -w 1\n" in saved
    assert "-A -u 10.96.0.10:53 -s rr\n" in saved
    assert fake.sets["KUBE-LOOP-BACK"] == {
        "10.244.0.27,tcp:80,10.244.0.27",
        "10.244.0.28,tcp:80,10.244.0.28",
        "10.244.0.30,tcp:80,10.244.0.30",
        "10.244.0.29,tcp:53,10.244.0.29",
        "10.244.0.29,udp:53,10.244.0.29",
        "10.244.0.29,tcp:9153,10.244.0.29",
    }
    assert "10.96.0.10,udp:53" in fake.sets["KUBE-CLUSTER-IP"]
    assert fake.addresses() == {"10.96.0.1", "10.96.0.10", "10.101.57.97"}
    nat = fake.iptables.tables["nat"].chains
    assert (
        '-m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"'
        " -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE"
    ) in nat["KUBE-POSTROUTING"]
    assert nat["PREROUTING"] == [
        '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    ]


def test_session_affinity_is_persistence() -> None:
    state = fold([svc("s", "10.96.0.9", session_affinity_timeout=600), eps("s", ["10.0.0.1"])])
    fake = FakeIpvsKernel()
    IpvsProxier(state, fake, CONFIG).sync()
    assert "-A -t 10.96.0.9:80 -s rr -p 600\n" in ipvsadm_save(fake.table)


def test_scheduler_is_configurable() -> None:
    state = fold([svc("s", "10.96.0.9"), eps("s", ["10.0.0.1"])])
    fake = FakeIpvsKernel()
    IpvsProxier(state, fake, IpvsConfig(scheduler="lc")).sync()
    assert "-A -t 10.96.0.9:80 -s lc\n" in ipvsadm_save(fake.table)


def big_cluster(services: int) -> ClusterState:
    events = []
    for i in range(services):
        events += [
            svc(f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}", namespace="bench"),
            eps(
                f"s{i}",
                [f"10.1.{i // 250}.{i % 250}", f"10.2.{i // 250}.{i % 250}"],
                namespace="bench",
            ),
        ]
    return fold(events)


def test_one_endpoint_change_is_one_or_two_operations() -> None:
    state = big_cluster(300)
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(state, fake, CONFIG)
    proxier.sync()
    restores = len(fake.iptables.restores)
    fold([eps("s7", ["10.1.0.7", "10.3.0.7"], namespace="bench", event="MODIFIED")], state)
    outcome = proxier.sync()
    assert outcome is not None and outcome.metrics.sync == "incremental"
    # The new one added, the old one deleted (it has no connections, so no draining).
    assert [o.kind for o in outcome.ops] == ["add_dest", "del_dest"]
    assert outcome.metrics.ops == 2
    assert len(fake.iptables.restores) == restores  # the iptables text did not change
    key = ServiceKey("TCP", "10.96.0.8", 80)
    assert fake.table.destinations[key] == {
        RealServer("10.1.0.7", 80): 1,
        RealServer("10.3.0.7", 80): 1,
    }


def test_drained_real_server_is_deleted_once_idle_or_after_the_timeout() -> None:
    state = fold([svc("a", "10.96.0.5"), eps("a", ["10.0.0.1", "10.0.0.2"])])
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(state, fake, CONFIG, drain_timeout_s=3600)
    proxier.sync()
    key, gone = ServiceKey("TCP", "10.96.0.5", 80), RealServer("10.0.0.2", 80)
    fake.connections[(key, gone)] = (1, 2)  # an established connection and two in TIME_WAIT
    fold([eps("a", ["10.0.0.1"], event="MODIFIED")], state)
    proxier.sync()
    assert fake.table.destinations[key][gone] == 0 and proxier.pending_work
    assert proxier.sync() is None  # still busy: nothing to do yet
    fake.connections[(key, gone)] = (0, 0)
    outcome = proxier.sync()
    assert outcome is not None and [o.kind for o in outcome.ops] == ["del_dest"]
    assert gone not in fake.table.destinations[key] and not proxier.pending_work

    # The timeout: a drained server with connections is deleted anyway once it passes.
    state2 = fold([svc("b", "10.96.0.6"), eps("b", ["10.0.0.1", "10.0.0.2"])])
    fake2 = FakeIpvsKernel()
    impatient = IpvsProxier(state2, fake2, CONFIG, drain_timeout_s=0)
    impatient.sync()
    key2 = ServiceKey("TCP", "10.96.0.6", 80)
    fake2.connections[(key2, gone)] = (5, 5)
    fold([eps("b", ["10.0.0.1"], event="MODIFIED")], state2)
    impatient.sync()
    assert gone not in fake2.table.destinations[key2]


def test_udp_real_server_is_deleted_at_once() -> None:
    port = (PortSpec(53, "dns", "UDP"),)
    state = fold([svc("d", "10.96.0.10", port), eps("d", ["10.0.0.1", "10.0.0.2"], port)])
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(state, fake, CONFIG)
    proxier.sync()
    fold([eps("d", ["10.0.0.1"], port, event="MODIFIED")], state)
    outcome = proxier.sync()
    assert outcome is not None and [o.kind for o in outcome.ops] == ["del_dest"]
    assert not proxier.pending_work


def test_full_sync_repairs_drift() -> None:
    state = fold([svc("a", "10.96.0.5"), eps("a", ["10.0.0.1", "10.0.0.2"])])
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(state, fake, CONFIG)
    proxier.sync()
    key = ServiceKey("TCP", "10.96.0.5", 80)
    del fake.table.destinations[key][RealServer("10.0.0.1", 80)]  # deleted by hand
    stray = VirtualServer(ServiceKey("TCP", "10.96.9.9", 80), "rr", 0)  # left by someone else
    fake.table.services[stray.key], fake.table.destinations[stray.key] = stray, {}
    fake.sets["KUBE-CLUSTER-IP"].add("10.96.9.9,tcp:80")
    outcome = proxier.sync(full=True)
    assert outcome is not None
    assert sorted(o.kind for o in outcome.ops) == ["add_dest", "del_service"]
    assert RealServer("10.0.0.1", 80) in fake.table.destinations[key]
    assert stray.key not in fake.table.services
    assert "10.96.9.9,tcp:80" not in fake.sets["KUBE-CLUSTER-IP"]


def test_failed_apply_names_the_object_and_makes_the_next_sync_full() -> None:
    state = fold([svc("a", "10.96.0.5"), eps("a", ["10.0.0.1"])])
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(state, fake, CONFIG)
    proxier.sync()
    # Drift the incremental sync does not know about: the service is gone from the kernel.
    key = ServiceKey("TCP", "10.96.0.5", 80)
    del fake.table.services[key], fake.table.destinations[key]
    fold([eps("a", ["10.0.0.1", "10.0.0.2"], event="MODIFIED")], state)
    with pytest.raises(
        ApplyError, match=r"IPVS add_dest TCP 10\.96\.0\.5:80 -> 10\.0\.0\.2:80 \(weight 1\) failed"
    ):
        proxier.sync()
    assert proxier.need_full
    outcome = proxier.sync()
    assert outcome is not None and outcome.metrics.sync == "full"
    assert set(fake.table.destinations[key]) == {
        RealServer("10.0.0.1", 80),
        RealServer("10.0.0.2", 80),
    }


def test_shared_entries_are_reference_counted() -> None:
    ports = (PortSpec(80, "http"), PortSpec(443, "https"))
    state = fold([svc("m", "10.96.0.7", ports), eps("m", [EndpointSpec("10.0.0.1")], ports)])
    fake = FakeIpvsKernel()
    proxier = IpvsProxier(state, fake, CONFIG)
    proxier.sync()
    # Drop one port: the ClusterIP stays bound, since the other port still uses it.
    fold([svc("m", "10.96.0.7", ports[:1])], state)
    proxier.sync()
    assert fake.addresses() == {"10.96.0.7"}
    fold([watch_event("DELETED", svc("m", "10.96.0.7", ports[:1])["object"])], state)
    proxier.sync()
    assert fake.addresses() == set() and fake.table.services == {}


def test_iptables_rules_without_cluster_cidr_masquerade_vip_sources() -> None:
    text = iptables_rules({"KUBE-CLUSTER-IP"}, IpvsConfig(), ())
    assert "-m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ" in text
    assert "KUBE-LOOP-BACK" not in text


def test_fake_refuses_like_the_kernel() -> None:
    fake = FakeIpvsKernel()
    vs = VirtualServer(TCP, "rr", 0)
    with pytest.raises(ApplyError, match="No such process"):
        fake.ipvs_apply([Op("add_dest", vs, RealServer("10.0.0.1", 80), 1)])
    fake.ipvs_apply([Op("add_service", vs)])
    with pytest.raises(ApplyError, match="File exists"):
        fake.ipvs_apply([Op("add_service", vs)])
    with pytest.raises(ApplyError, match="does not exist"):
        fake.ipset_apply([("KUBE-CLUSTER-IP", "10.96.0.1,tcp:80")], [], create=False)
    fake.ipset_apply([], [], create=True)
    with pytest.raises(ApplyError, match="not an entry of hash:ip,port"):
        fake.ipset_apply([("KUBE-CLUSTER-IP", "10.96.0.1:80")], [], create=False)
