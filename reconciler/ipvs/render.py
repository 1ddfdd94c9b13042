"""Pure render of ipvs mode: what each service port needs in IPVS, ipsets and iptables.

Follows kube-proxy's ipvs proxier (pkg/proxy/ipvs/proxier.go): one virtual server per
ClusterIP:port with masquerading real servers of weight 1, the ClusterIP bound to the
dummy device kube-ipvs0, the KUBE-CLUSTER-IP and KUBE-LOOP-BACK ipsets, and the iptables
rules that match those sets. Per service port the result is a PortState; an Aggregate sums
them with reference counts (two services may share an address or a loopback entry) and
reports what changed, so a sync after one endpoint change costs O(1), not O(services).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.iptables.render import JumpRule
from reconciler.ipvs.model import (
    IPSET_BY_NAME,
    IPSETS,
    IpvsTable,
    RealServer,
    ServiceKey,
    VirtualServer,
    ipset_create_line,
)
from reconciler.model import Endpoint, ServicePort
from reconciler.topology import categorize_endpoints

LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
KNOWN_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh")


@dataclass(frozen=True)
class IpvsConfig:
    """Settings of kube-proxy's ipvs proxier that change what it programs."""

    cluster_cidr: str | None = None
    masquerade_all: bool = False
    masquerade_bit: int = 14
    random_fully: bool = True
    scheduler: str = "rr"

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(frozen=True)
class PortState:
    """Everything one service port puts into the kernel in ipvs mode."""

    service: VirtualServer
    destinations: Mapping[RealServer, int]
    address: str  # bound to kube-ipvs0
    ipset_entries: tuple[tuple[str, str], ...]  # (set name, entry) pairs


def port_state(sp: ServicePort, endpoints: Sequence[Endpoint], config: IpvsConfig) -> PortState:
    proto = sp.name.protocol.value
    key = ServiceKey(proto, sp.cluster_ip, sp.port)
    service = VirtualServer(key, config.scheduler, sp.affinity_timeout_s or 0)
    cluster, local, _, _ = categorize_endpoints(sp, endpoints)
    chosen = local if sp.internal_policy_local else cluster
    lower = proto.lower()
    entries = [(CLUSTER_IP, f"{sp.cluster_ip},{lower}:{sp.port}")]
    # Hairpin: only endpoints on this node can loop back through it (kube-proxy skips others).
    entries += [
        (LOOP_BACK, f"{ep.ip},{lower}:{ep.port},{ep.ip}") for ep in endpoints if ep.is_local
    ]
    return PortState(
        service=service,
        destinations={RealServer(ep.ip, ep.port): 1 for ep in chosen},
        address=sp.cluster_ip,
        ipset_entries=tuple(entries),
    )


@dataclass
class Delta:
    """The net effect of one batch of port changes on the desired state.

    Replacing a port removes and re-adds its shared entries (its ClusterIP, say): those
    cancel out here, so only real changes reach the kernel.
    """

    services: set[ServiceKey] = field(default_factory=set)  # whose VS or real servers changed
    _ipsets: Counter[tuple[str, str]] = field(default_factory=Counter)
    _addresses: Counter[str] = field(default_factory=Counter)

    @property
    def ipset_add(self) -> list[tuple[str, str]]:
        return sorted(e for e, n in self._ipsets.items() if n > 0)

    @property
    def ipset_del(self) -> list[tuple[str, str]]:
        return sorted(e for e, n in self._ipsets.items() if n < 0)

    @property
    def address_add(self) -> list[str]:
        return sorted(a for a, n in self._addresses.items() if n > 0)

    @property
    def address_del(self) -> list[str]:
        return sorted(a for a, n in self._addresses.items() if n < 0)


class Aggregate:
    """The desired kernel state: the sum of all PortStates, with reference counts."""

    def __init__(self) -> None:
        self.table = IpvsTable.empty()
        self.ipsets: dict[str, Counter[str]] = {info.name: Counter() for info in IPSETS}
        self.addresses: Counter[str] = Counter()
        self._port_count: Counter[ServiceKey] = Counter()

    def replace(self, old: PortState | None, new: PortState | None, delta: Delta) -> None:
        if old is not None:
            self._remove(old, delta)
        if new is not None:
            self._add(new, delta)

    def _add(self, ps: PortState, delta: Delta) -> None:
        key = ps.service.key
        self._port_count[key] += 1
        self.table.services[key] = ps.service
        self.table.destinations.setdefault(key, {}).update(ps.destinations)
        delta.services.add(key)
        for name, entry in ps.ipset_entries:
            counts = self.ipsets[name]
            counts[entry] += 1
            if counts[entry] == 1:
                delta._ipsets[(name, entry)] += 1
        self.addresses[ps.address] += 1
        if self.addresses[ps.address] == 1:
            delta._addresses[ps.address] += 1

    def _remove(self, ps: PortState, delta: Delta) -> None:
        key = ps.service.key
        self._port_count[key] -= 1
        delta.services.add(key)
        if self._port_count[key] == 0:
            del self._port_count[key]
            del self.table.services[key]
            del self.table.destinations[key]
        else:
            dests = self.table.destinations[key]
            for rs in ps.destinations:
                dests.pop(rs, None)
        for name, entry in ps.ipset_entries:
            counts = self.ipsets[name]
            counts[entry] -= 1
            if counts[entry] == 0:
                del counts[entry]
                delta._ipsets[(name, entry)] -= 1
        self.addresses[ps.address] -= 1
        if self.addresses[ps.address] == 0:
            del self.addresses[ps.address]
            delta._addresses[ps.address] -= 1

    def ipset_entries(self) -> dict[str, set[str]]:
        return {name: set(counts) for name, counts in self.ipsets.items()}


# Jumps from built-in chains (iptablesJumpChain in the ipvs proxier).
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
    JumpRule("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
    JumpRule("filter", "INPUT", "KUBE-NODE-PORT", "kubernetes health check rules"),
    JumpRule("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    JumpRule("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
)
NAT_CHAINS = (
    "KUBE-SERVICES",
    "KUBE-POSTROUTING",
    "KUBE-NODE-PORT",
    "KUBE-LOAD-BALANCER",
    "KUBE-MARK-MASQ",
)
FILTER_CHAINS = (
    "KUBE-FORWARD",
    "KUBE-NODE-PORT",
    "KUBE-PROXY-FIREWALL",
    "KUBE-SOURCE-RANGES-FIREWALL",
)


def _set_rule(chain: str, name: str, match: str, target: str) -> str:
    comment = IPSET_BY_NAME[name].comment
    return (
        f'-A {chain} -m comment --comment "{comment}" -m set --match-set {name} {match} -j {target}'
    )


def iptables_rules(
    nonempty: set[str], config: IpvsConfig, missing_jumps: Sequence[JumpRule] = JUMP_RULES
) -> str:
    """writeIptablesRules: the (small) iptables-restore input ipvs mode rewrites every sync."""
    mark = config.mark
    nat = [f":{c} - [0:0]" for c in NAT_CHAINS]
    filt = [f":{c} - [0:0]" for c in FILTER_CHAINS]
    nat += [f"-I {j.source_chain} 1 {j.rule_spec}" for j in missing_jumps if j.table == "nat"]
    filt += [f"-I {j.source_chain} 1 {j.rule_spec}" for j in missing_jumps if j.table == "filter"]
    if LOOP_BACK in nonempty:
        nat.append(_set_rule("KUBE-POSTROUTING", LOOP_BACK, "dst,dst,src", "MASQUERADE"))
    if CLUSTER_IP in nonempty:
        comment = IPSET_BY_NAME[CLUSTER_IP].comment
        head = f'-A KUBE-SERVICES -m comment --comment "{comment}" -m set --match-set {CLUSTER_IP}'
        if config.masquerade_all:
            nat.append(f"{head} dst,dst -j KUBE-MARK-MASQ")
        elif config.cluster_cidr:
            nat.append(f"{head} dst,dst ! -s {config.cluster_cidr} -j KUBE-MARK-MASQ")
        else:
            # Node-originated traffic from a VIP source to a VIP: always masquerade.
            nat.append(f"{head} src,dst -j KUBE-MARK-MASQ")
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    nat.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    filt.append("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP")
    # acceptIPVSTraffic: must come last in KUBE-SERVICES.
    for name in (CLUSTER_IP, "KUBE-LOAD-BALANCER"):
        if name in nonempty:
            nat.append(f"-A KUBE-SERVICES -m set --match-set {name} dst,dst -j ACCEPT")
    filt.append(
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules"'
        f" -m mark --mark {mark}/{mark} -j ACCEPT"
    )
    filt.append(
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule"'
        " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    )
    filt.append(_set_rule("KUBE-NODE-PORT", "KUBE-HEALTH-CHECK-NODE-PORT", "dst", "ACCEPT"))
    nat.append(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
    nat.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
    nat.append(
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + (" --random-fully" if config.random_fully else "")
    )
    nat.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")
    # The ipvs proxier writes nat before filter.
    return "\n".join(["*nat", *nat, "COMMIT", "*filter", *filt, "COMMIT", ""])


def ipvsadm_save(table: IpvsTable) -> str:
    """The table as `ipvsadm -S -n` prints it (sorted, since the kernel's order is a hash's)."""
    lines = []
    for key in sorted(table.services):
        vs = table.services[key]
        persistent = f" -p {vs.timeout}" if vs.timeout else ""
        lines.append(f"-A {key.ipvsadm()} -s {vs.scheduler}{persistent}")
        for rs, weight in sorted(table.destinations.get(key, {}).items()):
            lines.append(f"-a {key.ipvsadm()} -r {rs.ip}:{rs.port} -m -w {weight}")
    return "".join(line + "\n" for line in lines)


def ipset_save(entries: Mapping[str, Iterable[str]]) -> str:
    """The sets as `ipset save` prints them (create lines, then the sorted members)."""
    lines = []
    for info in IPSETS:
        lines.append(ipset_create_line(info))
        lines.extend(f"add {info.name} {entry}" for entry in sorted(entries.get(info.name, ())))
    return "".join(line + "\n" for line in lines)
