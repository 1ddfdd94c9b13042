"""Pure render of kube-proxy's iptables-restore input (full or partial sync) from the folded state.

Mirrors syncProxyRules in pkg/proxy/iptables/proxier.go (kube-proxy >= 1.28): the same
chains, rule text, argument order and interleaving, so our output diffs cleanly against a
cluster's. Services are visited in sorted order (kube-proxy walks a Go map) so that the
same state always renders the same bytes. No I/O here: the kernel adapter applies the text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.bulk import no_cyclic_gc
from reconciler.iptables import names
from reconciler.iptables.names import (
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
)
from reconciler.model import Endpoint, NamespacedName, ServicePort, ServicePortName
from reconciler.state import ClusterState
from reconciler.topology import categorize_endpoints

# kube-proxy drops per-endpoint comments above this many endpoints (largeClusterMode).
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000


@dataclass(frozen=True)
class IptablesConfig:
    """Settings of kube-proxy's iptables proxier that change the rules it writes."""

    # Pod CIDR for the local-traffic detector ("! -s CIDR -j KUBE-MARK-MASQ"); None: no detector.
    cluster_cidr: str | None = None
    masquerade_all: bool = False
    masquerade_bit: int = 14
    # kube-proxy's iptables.localhostNodePorts (true in the v1alpha1 config most clusters run).
    localhost_nodeports: bool = True
    # MASQUERADE --random-fully: kube-proxy adds it when iptables supports it (>= 1.6.2).
    random_fully: bool = True
    # With nf_conntrack_tcp_be_liberal=1 kube-proxy skips the INVALID drop rule.
    conntrack_tcp_liberal: bool = False
    # Node addresses, for loadBalancerSourceRanges that include the node itself.
    node_ips: tuple[str, ...] = ()

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(frozen=True, slots=True)
class JumpRule:
    """A rule kube-proxy ensures in a built-in chain (iptablesJumpChains)."""

    table: str
    source_chain: str
    target_chain: str
    comment: str
    extra_args: str = ""

    @property
    def rule_spec(self) -> str:
        """The rule as iptables-save prints it, without "-A CHAIN"."""
        parts = [self.extra_args] if self.extra_args else []
        if self.comment:
            parts.append(f'-m comment --comment "{self.comment}"')
        parts.append(f"-j {self.target_chain}")
        return " ".join(parts)


_NEW = "-m conntrack --ctstate NEW"
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule(
        "filter",
        "INPUT",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule(
        "filter",
        "FORWARD",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    JumpRule("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    # iptablesKubeletJumpChains: kubelet's firewall chain, which kube-proxy fills.
    JumpRule("filter", "INPUT", KUBE_FIREWALL, ""),
    JumpRule("filter", "OUTPUT", KUBE_FIREWALL, ""),
)


KernelView = Callable[[], tuple[Collection[str], Sequence[JumpRule]]]


@dataclass(frozen=True, slots=True)
class PortChains:
    """What one service port owns in the nat table, remembered between partial syncs."""

    chains: tuple[str, ...]
    nat_rules: int


_NO_CHAINS = PortChains((), 0)


@dataclass
class RenderedRules:
    """An iptables-restore input plus the bookkeeping the next sync needs."""

    text: str
    full: bool
    services: int
    endpoints: int
    rules_written: int
    rules_total: int
    port_chains: dict[ServicePortName, PortChains]
    deleted_chains: list[str] = field(default_factory=list)


def render(
    state: ClusterState,
    config: IptablesConfig,
    *,
    changed: Collection[NamespacedName] | None = None,
    previous: Mapping[ServicePortName, PortChains] | None = None,
    existing_chains: Collection[str] = (),
    missing_jumps: Sequence[JumpRule] = JUMP_RULES,
    kernel_view: KernelView | None = None,
) -> RenderedRules:
    """Render a sync.

    changed=None is a full sync: every chain is written, and every kube-proxy chain in
    `existing_chains` (what the kernel has) that is no longer wanted is deleted. Otherwise it
    is a partial sync: the top-level chains are written in full but per-service chains only
    for services in `changed`; their chains that went away are deleted, using `previous`.

    `kernel_view`, if given, supplies (existing_chains, missing_jumps) instead, and is called
    only once the services are rendered: the caller can read the kernel meanwhile.
    """
    if kernel_view is None:
        chains, jumps = existing_chains, missing_jumps

        def kernel_view() -> tuple[Collection[str], Sequence[JumpRule]]:
            return chains, jumps

    with no_cyclic_gc():
        return _render(state, config, changed, previous, kernel_view)


def _render(
    state: ClusterState,
    config: IptablesConfig,
    changed: Collection[NamespacedName] | None,
    previous: Mapping[ServicePortName, PortChains] | None,
    kernel_view: KernelView,
) -> RenderedRules:
    full = changed is None
    previous = previous or {}
    mark = config.mark
    ports = list(state.sorted_service_ports())
    endpoints_map = state.endpoints
    total_endpoints = sum(len(endpoints_map.get(sp.name, ())) for sp in ports)
    large_cluster = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD

    filter_chains = [
        f":{c} - [0:0]"
        for c in (
            KUBE_SERVICES,
            KUBE_EXTERNAL_SERVICES,
            KUBE_FORWARD,
            KUBE_NODEPORTS,
            KUBE_PROXY_FIREWALL,
        )
    ]
    nat_chains = [
        f":{c} - [0:0]" for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)
    ]
    filter_rules: list[str] = []
    nat_rules = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + (" --random-fully" if config.random_fully else ""),
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    if config.localhost_nodeports:
        filter_chains.append(f":{KUBE_FIREWALL} - [0:0]")
        filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections"'
            " -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        )
    # The jumps from built-in chains go here, once the kernel view is known (after the loop).
    filter_jumps_at, nat_jumps_at = len(filter_rules), len(nat_rules)

    writer = _ServiceWriter(config, large_cluster, filter_rules)
    port_chains: dict[ServicePortName, PortChains] = {} if full else dict(previous)
    skipped_rules = 0
    dropped: set[str] = set()
    kept: set[str] = set()
    for sp in ports:
        eps = endpoints_map.get(sp.name, ())
        if full or sp.name.service in changed or sp.name not in port_chains:  # type: ignore[operator]
            owned = writer.write(sp, eps, nat_chains, nat_rules)
            old = port_chains.get(sp.name)
            if old is not None:
                dropped.update(old.chains)
            kept.update(owned.chains)
            port_chains[sp.name] = owned
        else:
            # Unchanged: its top-level rules are written, its own chains left as they are.
            writer.write(sp, eps, None, nat_rules)
            skipped_rules += port_chains[sp.name].nat_rules
    existing_chains, missing_jumps = kernel_view()
    filter_rules[filter_jumps_at:filter_jumps_at] = _jump_lines(missing_jumps, "filter")
    nat_rules[nat_jumps_at:nat_jumps_at] = _jump_lines(missing_jumps, "nat")
    if not full:
        assert changed is not None
        live = {sp.name for sp in ports}
        for name in [n for n in port_chains if n.service in changed and n not in live]:
            dropped.update(port_chains.pop(name).chains)
        deleted = sorted(dropped - kept)
    else:
        active = {c for pc in port_chains.values() for c in pc.chains}
        deleted = sorted(
            c for c in existing_chains if names.is_service_chain(c) and c not in active
        )
    # Stale chains: a chain line flushes them, then -X deletes them (after the rules).
    nat_chains.extend(f":{c} - [0:0]" for c in deleted)
    nat_rules.extend(f"-X {c}" for c in deleted)

    nodeport_destinations = "-m addrtype --dst-type LOCAL"
    if not config.localhost_nodeports:
        nodeport_destinations += " ! -d 127.0.0.0/8"
    nat_rules.append(
        f'-A {KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be'
        f' the last rule in this chain" {nodeport_destinations} -j {KUBE_NODEPORTS}'
    )
    if not config.conntrack_tcp_liberal:
        filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
    filter_rules.append(
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules"'
        f" -m mark --mark {mark}/{mark} -j ACCEPT"
    )
    filter_rules.append(
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule"'
        " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    )

    text = "\n".join(
        [
            "*filter",
            *filter_chains,
            *filter_rules,
            "COMMIT",
            "*nat",
            *nat_chains,
            *nat_rules,
            "COMMIT",
            "",
        ]
    )
    # Counted like kube-proxy's sync_proxy_rules_iptables_last: neither the -X lines nor
    # the jumps from built-in chains (which kube-proxy adds outside the restore) are rules.
    written = len(filter_rules) + len(nat_rules) - len(deleted) - len(missing_jumps)
    return RenderedRules(
        text=text,
        full=full,
        services=len(ports),
        endpoints=total_endpoints,
        rules_written=written,
        rules_total=written + skipped_rules,
        port_chains=port_chains,
        deleted_chains=deleted,
    )


def _jump_lines(jumps: Sequence[JumpRule], table: str) -> list[str]:
    # kube-proxy prepends each jump in list order (EnsureRule(Prepend)); "-I CHAIN 1" in the
    # same order gives the same final order, inside the one atomic restore.
    return [f"-I {j.source_chain} 1 {j.rule_spec}" for j in jumps if j.table == table]


class _ServiceWriter:
    """Writes one service port's rules; `nat_chains=None` writes only the top-level ones."""

    def __init__(self, config: IptablesConfig, large_cluster: bool, filter_rules: list[str]):
        self.config = config
        self.large_cluster = large_cluster
        self.filter_rules = filter_rules
        cidr = config.cluster_cidr
        self.if_not_local = f" ! -s {cidr}" if cidr else None
        self.if_local = f" -s {cidr}" if cidr else None

    def write(
        self,
        sp: ServicePort,
        endpoints: Sequence[Endpoint],
        nat_chains: list[str] | None,
        nat_rules: list[str],
    ) -> PortChains:
        name = str(sp.name)
        proto = sp.name.protocol.lower
        h = names.port_proto_hash(sp.name)
        svc_chain, svl_chain = f"KUBE-SVC-{h}", f"KUBE-SVL-{h}"
        ext_chain, fw_chain = f"KUBE-EXT-{h}", f"KUBE-FW-{h}"
        cluster_eps, local_eps, reachable_eps, has_endpoints = categorize_endpoints(sp, endpoints)

        uses_cluster_chain = bool(cluster_eps) and sp.uses_cluster_endpoints
        uses_local_chain = bool(local_eps) and sp.uses_local_endpoints
        internal_chain, has_internal = svc_chain, has_endpoints
        if sp.internal_policy_local:
            internal_chain, has_internal = svl_chain, bool(local_eps)
        external_policy_chain, has_external = svc_chain, has_endpoints
        if sp.external_policy_local:
            external_policy_chain, has_external = svl_chain, bool(local_eps)
        uses_ext_chain = has_endpoints and sp.externally_accessible
        uses_fw_chain = (
            has_endpoints and bool(sp.load_balancer_ips) and bool(sp.load_balancer_source_ranges)
        )
        lb_chain = fw_chain if uses_fw_chain else ext_chain

        if not has_endpoints:
            internal_target = external_target = "REJECT"
            internal_comment = external_comment = f'"{name} has no endpoints"'
        else:
            internal_target = external_target = "DROP"
            internal_comment = external_comment = f'"{name} has no local endpoints"'

        match = f"-m {proto} -p {proto}"
        dport = f"--dport {sp.port}"
        filter_rules = self.filter_rules

        # Top-level rules: written on every sync, partial or full.
        if has_internal:
            nat_rules.append(
                f'-A {KUBE_SERVICES} -m comment --comment "{name} cluster IP" {match}'
                f" -d {sp.cluster_ip} {dport} -j {internal_chain}"
            )
        else:
            filter_rules.append(
                f"-A {KUBE_SERVICES} -m comment --comment {internal_comment} {match}"
                f" -d {sp.cluster_ip} {dport} -j {internal_target}"
            )
        for ip in sp.external_ips:
            if has_endpoints:
                nat_rules.append(
                    f'-A {KUBE_SERVICES} -m comment --comment "{name} external IP" {match}'
                    f" -d {ip} {dport} -j {ext_chain}"
                )
            if not has_external:
                filter_rules.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {match}"
                    f" -d {ip} {dport} -j {external_target}"
                )
        for ip in sp.load_balancer_ips:
            if has_endpoints:
                nat_rules.append(
                    f'-A {KUBE_SERVICES} -m comment --comment "{name} loadbalancer IP" {match}'
                    f" -d {ip} {dport} -j {lb_chain}"
                )
            if uses_fw_chain:
                filter_rules.append(
                    f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{name} traffic not accepted by'
                    f' {fw_chain}" {match} -d {ip} {dport} -j DROP'
                )
        if not has_external:
            for ip in sp.load_balancer_ips:
                filter_rules.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {match}"
                    f" -d {ip} {dport} -j {external_target}"
                )
        if sp.node_port:
            if has_endpoints:
                nat_rules.append(
                    f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match}"
                    f" --dport {sp.node_port} -j {ext_chain}"
                )
            if not has_external:
                filter_rules.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment}"
                    f" -m addrtype --dst-type LOCAL {match} --dport {sp.node_port}"
                    f" -j {external_target}"
                )
        if sp.health_check_node_port:
            filter_rules.append(
                f'-A {KUBE_NODEPORTS} -m comment --comment "{name} health check node port"'
                f" -m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT"
            )
        if nat_chains is None:
            return _NO_CHAINS

        # Per-service chains: skipped by a partial sync when the service did not change.
        first_own_rule = len(nat_rules)
        chains: list[str] = []
        if has_internal:
            args = f'-m comment --comment "{name} cluster IP" {match} -d {sp.cluster_ip} {dport}'
            if self.config.masquerade_all:
                nat_rules.append(f"-A {internal_chain} {args} -j {KUBE_MARK_MASQ}")
            elif self.if_not_local:
                nat_rules.append(
                    f"-A {internal_chain} {args}{self.if_not_local} -j {KUBE_MARK_MASQ}"
                )
        if uses_ext_chain:
            nat_chains.append(f":{ext_chain} - [0:0]")
            chains.append(ext_chain)
            if not sp.external_policy_local:
                nat_rules.append(
                    f'-A {ext_chain} -m comment --comment "masquerade traffic for {name} external'
                    f' destinations" -j {KUBE_MARK_MASQ}'
                )
            else:
                if self.if_local:
                    nat_rules.append(
                        f'-A {ext_chain} -m comment --comment "pod traffic for {name} external'
                        f' destinations"{self.if_local} -j {svc_chain}'
                    )
                nat_rules.append(
                    f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {name}'
                    f' external destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}'
                )
                nat_rules.append(
                    f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {name} external'
                    f' destinations" -m addrtype --src-type LOCAL -j {svc_chain}'
                )
            if has_external:
                nat_rules.append(f"-A {ext_chain} -j {external_policy_chain}")
        if uses_fw_chain:
            nat_chains.append(f":{fw_chain} - [0:0]")
            chains.append(fw_chain)
            fw_args = f'-A {fw_chain} -m comment --comment "{name} loadbalancer IP"'
            allow_from_node = False
            for cidr in sp.load_balancer_source_ranges:
                nat_rules.append(f"{fw_args} -s {cidr} -j {ext_chain}")
                allow_from_node = allow_from_node or any(
                    _cidr_contains(cidr, ip) for ip in self.config.node_ips
                )
            if allow_from_node:
                for ip in sp.load_balancer_ips:
                    nat_rules.append(f"{fw_args} -s {ip} -j {ext_chain}")
            nat_rules.append(
                f'-A {fw_chain} -m comment --comment "other traffic to {name} will be dropped by'
                f' KUBE-PROXY-FIREWALL"'
            )
        if uses_cluster_chain:
            nat_chains.append(f":{svc_chain} - [0:0]")
            chains.append(svc_chain)
            self._write_balancing(sp, name, proto, svc_chain, cluster_eps, nat_rules)
        if uses_local_chain:
            nat_chains.append(f":{svl_chain} - [0:0]")
            chains.append(svl_chain)
            self._write_balancing(sp, name, proto, svl_chain, local_eps, nat_rules)

        sep_comment = "" if self.large_cluster else f" -m comment --comment {name}"
        affinity = sp.affinity_timeout_s is not None
        for ep in reachable_eps:
            ep_key = ep.key
            sep = names.endpoint_chain(name, proto, ep_key)
            nat_chains.append(f":{sep} - [0:0]")
            chains.append(sep)
            nat_rules.append(f"-A {sep}{sep_comment} -s {ep.ip} -j {KUBE_MARK_MASQ}")
            recent = f" -m recent --name {sep} --set" if affinity else ""
            nat_rules.append(
                f"-A {sep}{sep_comment}{recent} {match} -j DNAT --to-destination {ep_key}"
            )
        return PortChains(tuple(chains), len(nat_rules) - first_own_rule)

    def _write_balancing(
        self,
        sp: ServicePort,
        name: str,
        proto: str,
        chain: str,
        endpoints: Sequence[Endpoint],
        nat_rules: list[str],
    ) -> None:
        """writeServiceToEndpointRules: affinity checks first, then the random cascade."""
        large = self.large_cluster
        if sp.affinity_timeout_s is not None:
            for ep in endpoints:
                sep = names.endpoint_chain(name, proto, ep.key)
                comment = "" if large else f' -m comment --comment "{name} -> {ep.key}"'
                nat_rules.append(
                    f"-A {chain}{comment} -m recent --name {sep} --rcheck"
                    f" --seconds {sp.affinity_timeout_s} --reap -j {sep}"
                )
        n = len(endpoints)
        probability = names.probability
        for i, ep in enumerate(endpoints):
            ep_key = ep.key
            sep = names.endpoint_chain(name, proto, ep_key)
            comment = "" if large else f' -m comment --comment "{name} -> {ep_key}"'
            if i < n - 1:
                nat_rules.append(
                    f"-A {chain}{comment} -m statistic --mode random --probability"
                    f" {probability(n - i)} -j {sep}"
                )
            else:
                nat_rules.append(f"-A {chain}{comment} -j {sep}")


def _cidr_contains(cidr: str, ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
