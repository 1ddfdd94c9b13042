"""The fold: watch events to kube-proxy's service-port and endpoints maps, with change tracking.

Handlers only record (`apply`); a sync drains (`drain`) and learns which services changed.
A service whose state after its last pending event equals its state at the previous drain
is not reported, so A->B->A churn costs nothing, as in kube-proxy's change trackers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from reconciler.bulk import no_cyclic_gc
from reconciler.events import Event, EventType, ServiceEvent, SliceData
from reconciler.model import Endpoint, NamespacedName, ServicePort, ServicePortName

EndpointsByPort = dict[ServicePortName, tuple[Endpoint, ...]]


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the rules of one service depend on: its ports and their endpoints."""

    ports: tuple[ServicePort, ...]
    endpoints: EndpointsByPort


_EMPTY = ServiceState((), {})


class ClusterState:
    """Folds events into the maps every proxier renders from.

    `node_name` marks endpoints on this node as local (traffic policy Local).
    """

    def __init__(self, node_name: str = "") -> None:
        self.node_name = node_name
        self._service_ports: dict[NamespacedName, tuple[ServicePort, ...]] = {}
        self._slices: dict[NamespacedName, dict[str, SliceData]] = {}
        self._touched: set[NamespacedName] = set()
        # The state as of the last drain, which is what the kernel was last asked to have.
        self._applied: dict[NamespacedName, ServiceState] = {}
        self.service_ports: dict[ServicePortName, ServicePort] = {}
        self.endpoints: EndpointsByPort = {}
        self._sorted_names: list[ServicePortName] | None = None

    def apply(self, event: Event) -> None:
        key = event.service
        self._touched.add(key)
        if isinstance(event, ServiceEvent):
            if event.type is EventType.DELETED:
                self._service_ports.pop(key, None)
            else:
                self._service_ports[key] = event.ports
            return
        slices = self._slices.get(key)
        if event.type is EventType.DELETED:
            if slices is not None:
                slices.pop(event.slice_name, None)
                if not slices:
                    del self._slices[key]
            return
        if slices is None:
            slices = self._slices[key] = {}
        slices[event.slice_name] = event.data

    def apply_all(self, events: Iterable[Event]) -> None:
        """Fold a batch; the cyclic GC is paused since a batch only adds acyclic values."""
        with no_cyclic_gc():
            for event in events:
                self.apply(event)

    @property
    def pending(self) -> bool:
        return bool(self._touched)

    def drain(self) -> set[NamespacedName]:
        """Bring the maps up to date; return the services whose rules may differ."""
        with no_cyclic_gc():
            return self._drain()

    def _drain(self) -> set[NamespacedName]:
        changed: set[NamespacedName] = set()
        for key in self._touched:
            before = self._applied.get(key, _EMPTY)
            after = ServiceState(self._service_ports.get(key, ()), self._merge_slices(key))
            if after == before:
                continue
            changed.add(key)
            if {p.name for p in before.ports} != {p.name for p in after.ports}:
                self._sorted_names = None
            for port in before.ports:
                del self.service_ports[port.name]
            for port_name in before.endpoints:
                del self.endpoints[port_name]
            for port in after.ports:
                self.service_ports[port.name] = port
            self.endpoints.update(after.endpoints)
            if after.ports or after.endpoints:
                self._applied[key] = after
            else:
                self._applied.pop(key, None)
        self._touched.clear()
        return changed

    def _merge_slices(self, key: NamespacedName) -> EndpointsByPort:
        slices = self._slices.get(key)
        if not slices:
            return {}
        node = self.node_name
        if len(slices) == 1:
            fast = _single_slice(key, next(iter(slices.values())), node)
            if fast is not None:
                return fast
        merged: dict[ServicePortName, dict[str, Endpoint]] = {}
        # Slice names sorted so that a duplicate address resolves the same way every replay.
        for slice_name in sorted(slices):
            data = slices[slice_name]
            for sport in data.ports:
                by_key = merged.setdefault(ServicePortName(key, sport.name, sport.protocol), {})
                port = sport.port
                for ep in data.endpoints:
                    endpoint = Endpoint(
                        ep.ip,
                        port,
                        ep.ready,
                        ep.serving,
                        ep.terminating,
                        bool(node) and ep.node_name == node,
                    )
                    ep_key = endpoint.key
                    existing = by_key.get(ep_key)
                    # endpointSliceCache: a non-terminating endpoint wins over a terminating one.
                    if existing is None or (existing.terminating and not endpoint.terminating):
                        by_key[ep_key] = endpoint
        return {
            name: tuple(by_key[k] for k in sorted(by_key))
            for name, by_key in merged.items()
            if by_key
        }

    def ports_of_service(self, service: NamespacedName) -> tuple[ServicePort, ...]:
        """The service's ports as of the last drain (empty if it has no rules)."""
        return self._applied.get(service, _EMPTY).ports

    def sorted_service_ports(self) -> Iterator[ServicePort]:
        """Service ports in a fixed order, so the same state renders the same bytes."""
        if self._sorted_names is None:
            self._sorted_names = sorted(self.service_ports)
        ports = self.service_ports
        for name in self._sorted_names:
            yield ports[name]


def _single_slice(key: NamespacedName, data: SliceData, node: str) -> EndpointsByPort | None:
    """The common case of one slice without duplicates, merged without the general dedup.

    None when the slice repeats an address or a port, which the general path resolves.
    """
    ips = [ep.ip for ep in data.endpoints]
    if len(set(ips)) != len(ips):
        return None
    if len({(p.name, p.protocol) for p in data.ports}) != len(data.ports):
        return None
    result: EndpointsByPort = {}
    for sport in data.ports:
        port = sport.port
        suffix = f":{port}"
        keyed = sorted(
            (
                ep.ip + suffix,
                Endpoint(
                    ep.ip,
                    port,
                    ep.ready,
                    ep.serving,
                    ep.terminating,
                    bool(node) and ep.node_name == node,
                ),
            )
            for ep in data.endpoints
        )
        if keyed:
            result[ServicePortName(key, sport.name, sport.protocol)] = tuple(e for _, e in keyed)
    return result
