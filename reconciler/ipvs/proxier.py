"""ipvs proxier: incremental IPVS/ipset/address changes, plus the iptables rules, per sync.

A full sync (the first, every sync period, after a failure) reads the kernel back and
repairs any drift; the others diff only the services that changed against what was last
applied, so one endpoint change is one or two netlink operations whatever the cluster
size. Every change is computed before any is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from reconciler.errors import ApplyError
from reconciler.iptables.proxier import missing_jumps
from reconciler.ipvs.diff import Op, apply_ops, diff, graceful
from reconciler.ipvs.kernel import IpvsBackend
from reconciler.ipvs.model import IpvsTable, RealServer, ServiceKey
from reconciler.ipvs.render import (
    JUMP_RULES,
    Aggregate,
    Delta,
    IpvsConfig,
    PortState,
    iptables_rules,
    port_state,
)
from reconciler.metrics import SyncMetrics, cpu_seconds
from reconciler.model import NamespacedName, ServicePortName
from reconciler.state import ClusterState

DRAIN_TIMEOUT_S = 60.0  # a drained real server is deleted after this even with connections


@dataclass
class SyncOutcome:
    metrics: SyncMetrics
    ops: list[Op] = field(default_factory=list)


class IpvsProxier:
    mode = "ipvs"

    def __init__(
        self,
        state: ClusterState,
        backend: IpvsBackend,
        config: IpvsConfig,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self.state = state
        self.backend = backend
        self.config = config
        self.drain_timeout_s = drain_timeout_s
        self.need_full = True
        self._aggregate = Aggregate()
        self._ports: dict[NamespacedName, dict[ServicePortName, PortState]] = {}
        self._applied = IpvsTable.empty()  # what the kernel holds, as far as we know
        self._draining: dict[tuple[ServiceKey, RealServer], float] = {}
        self._iptables_text = ""

    @property
    def pending_work(self) -> bool:
        """Drained real servers to check: the runner syncs again even without new events."""
        return bool(self._draining)

    def _port_states(self, service: NamespacedName) -> dict[ServicePortName, PortState]:
        out = {}
        for sp in self.state.ports_of_service(service):
            out[sp.name] = port_state(sp, self.state.endpoints.get(sp.name, ()), self.config)
        return out

    def sync(self, *, full: bool = False, newest_event: float | None = None) -> SyncOutcome | None:
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        changed = self.state.drain()
        full = full or self.need_full
        if not full and not changed and not self._draining:
            return None
        ops0 = self.backend.netlink_ops
        try:
            if full:
                ops, extra_ops, restored = self._full_sync()
            else:
                ops, extra_ops, restored = self._incremental_sync(changed)
        except ApplyError:
            self.need_full = True
            raise
        self.need_full = False
        if not full and not changed and not ops:
            return None  # only a check of draining real servers, and none is done yet
        applied = time.monotonic()
        metrics = SyncMetrics(
            mode=self.mode,
            sync="full" if full else "incremental",
            wall_s=time.perf_counter() - wall0,
            cpu_s=cpu_seconds() - cpu0,
            services=len(self._aggregate.table.services),
            endpoints=sum(len(d) for d in self._aggregate.table.destinations.values()),
            rules=self._iptables_text.count("\n-A ") if restored else 0,
            rules_total=self._iptables_text.count("\n-A "),
            bytes=len(self._iptables_text) if restored else 0,
            deleted_chains=0,
            changed_services=len(changed),
            latency_s=None if newest_event is None else applied - newest_event,
            timestamp=time.time(),
            ops=self.backend.netlink_ops - ops0 + extra_ops,
        )
        return SyncOutcome(metrics, ops)

    def _full_sync(self) -> tuple[list[Op], int, bool]:
        aggregate, delta = Aggregate(), Delta()
        ports: dict[NamespacedName, dict[ServicePortName, PortState]] = {}
        for sp in self.state.sorted_service_ports():
            ps = port_state(sp, self.state.endpoints.get(sp.name, ()), self.config)
            ports.setdefault(sp.name.service, {})[sp.name] = ps
            aggregate.replace(None, ps, delta)
        # Read the kernel back: this is where drift and earlier runs' leftovers are repaired.
        current = self.backend.ipvs_table()
        ops = self._resolve_drains(
            diff(current, aggregate.table, set(current.services) | set(aggregate.table.services))
        )
        want_sets = aggregate.ipset_entries()
        have_sets = self.backend.ipset_entries()
        ipset_add = [
            (n, e) for n, entries in want_sets.items() for e in entries - have_sets.get(n, set())
        ]
        ipset_del = [
            (n, e) for n, entries in have_sets.items() for e in entries - want_sets.get(n, set())
        ]
        have_addrs, want_addrs = self.backend.addresses(), set(aggregate.addresses)
        jumps = missing_jumps(self.backend.iptables.begin_save()(), JUMP_RULES)
        text = iptables_rules({n for n, e in want_sets.items() if e}, self.config, jumps)
        # Everything is computed; now apply: sets and addresses first, so that a new virtual
        # server is reachable and masqueraded as soon as it exists.
        self.backend.ipset_apply(ipset_add, [], create=True)
        self.backend.address_apply(want_addrs - have_addrs, [])
        self.backend.ipvs_apply(ops)
        self.backend.iptables.restore(text.encode())
        self.backend.ipset_apply([], ipset_del, create=False)
        self.backend.address_apply([], have_addrs - want_addrs)
        self._aggregate, self._ports = aggregate, ports
        self._applied = current
        apply_ops(self._applied, ops)
        # Remember the text without the jump insertions: it is what later syncs compare with.
        self._iptables_text = iptables_rules(
            {n for n, e in want_sets.items() if e}, self.config, ()
        )
        self._track_draining(ops)
        drain_ops = self._finish_draining()
        extra = len(ipset_add) + len(ipset_del) + len(want_addrs ^ have_addrs)
        return ops + drain_ops, extra, True

    def _incremental_sync(self, changed: set[NamespacedName]) -> tuple[list[Op], int, bool]:
        delta = Delta()
        aggregate = self._aggregate
        for service in changed:
            old = self._ports.pop(service, {})
            new = self._port_states(service)
            for name in old.keys() | new.keys():
                if old.get(name) != new.get(name):
                    aggregate.replace(old.get(name), new.get(name), delta)
            if new:
                self._ports[service] = new
        ops = self._resolve_drains(diff(self._applied, aggregate.table, delta.services))
        nonempty = {n for n, counts in aggregate.ipsets.items() if counts}
        text = iptables_rules(nonempty, self.config, ())
        self.backend.ipset_apply(delta.ipset_add, [], create=False)
        self.backend.address_apply(delta.address_add, [])
        self.backend.ipvs_apply(ops)
        restored = text != self._iptables_text
        if restored:  # unchanged text (the usual case) need not be rewritten
            self.backend.iptables.restore(text.encode())
            self._iptables_text = text
        self.backend.ipset_apply([], delta.ipset_del, create=False)
        self.backend.address_apply([], delta.address_del)
        apply_ops(self._applied, ops)
        self._track_draining(ops)
        drain_ops = self._finish_draining()
        extra = (
            len(delta.ipset_add)
            + len(delta.ipset_del)
            + len(delta.address_add)
            + len(delta.address_del)
        )
        return ops + drain_ops, extra, restored

    def _resolve_drains(self, ops: list[Op]) -> list[Op]:
        """GracefulDeleteRS: a real server without connections is deleted at once; only a busy
        one is drained (weight 0). Reads the real servers of just the services concerned."""
        starting = [
            i
            for i, op in enumerate(ops)
            if op.kind == "set_dest"
            and op.weight == 0
            and self._applied.destinations.get(op.service.key, {}).get(op.dest) != 0  # type: ignore[arg-type]
        ]
        if not starting:
            return ops
        infos = {
            key: self.backend.destinations(key) for key in {ops[i].service.key for i in starting}
        }
        resolved = list(ops)
        for i in starting:
            op = ops[i]
            info = infos[op.service.key].get(op.dest)  # type: ignore[arg-type]
            if info is None or info.active + info.inactive == 0:
                resolved[i] = Op("del_dest", op.service, op.dest)
        return resolved

    def _track_draining(self, ops: list[Op]) -> None:
        now = time.monotonic()
        for op in ops:
            if op.dest is None:
                if op.kind == "del_service":
                    self._draining = {
                        k: v for k, v in self._draining.items() if k[0] != op.service.key
                    }
                continue
            pair = (op.service.key, op.dest)
            if op.kind == "set_dest" and op.weight == 0:
                self._draining.setdefault(pair, now + self.drain_timeout_s)
            else:
                self._draining.pop(pair, None)  # wanted again, or deleted

    def _finish_draining(self) -> list[Op]:
        """Delete drained real servers without connections, or past the timeout."""
        if not self._draining:
            return []
        now = time.monotonic()
        ops = []
        for key in {k for k, _ in self._draining}:
            vs = self._applied.services.get(key)
            if vs is None:
                continue
            info = self.backend.destinations(key)
            for (k, rs), deadline in list(self._draining.items()):
                if k != key:
                    continue
                d = info.get(rs)
                if d is None or d.active + d.inactive == 0 or now >= deadline or not graceful(key):
                    if d is not None:
                        ops.append(Op("del_dest", vs, rs))
                    del self._draining[(k, rs)]
        self.backend.ipvs_apply(ops)
        apply_ops(self._applied, ops)
        return ops
