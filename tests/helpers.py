"""Builders shared by the tests: events in API form, folded states, rendered and traced rules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from harness.eventlog import (
    EndpointSpec,
    PortSpec,
    endpoint_slice_object,
    service_object,
    watch_event,
)
from reconciler.events import decode_line
from reconciler.iptables.dump import parse_save
from reconciler.iptables.fake import FakeIptables
from reconciler.iptables.render import IptablesConfig, render
from reconciler.iptables.tracer import Tracer
from reconciler.state import ClusterState

__all__ = [
    "EndpointSpec",
    "PortSpec",
    "added",
    "endpoint_slice_object",
    "fold",
    "lines_of",
    "service_object",
    "tracer_for",
    "watch_event",
]


def added(obj: dict[str, Any]) -> dict[str, Any]:
    return watch_event("ADDED", obj)


def fold(events: Iterable[dict[str, Any]], state: ClusterState | None = None) -> ClusterState:
    """Fold API-form events through the real decoder, as a replay would."""
    state = state or ClusterState()
    for event in events:
        decoded = decode_line(orjson.dumps(event))
        if decoded is not None:
            state.apply(decoded)
    return state


def svc(
    name: str,
    ip: str,
    ports: Sequence[PortSpec] = (PortSpec(80, "p80"),),
    namespace: str = "ns1",
    **kw: Any,
) -> dict[str, Any]:
    return added(service_object(namespace, name, ip, ports, **kw))


def eps(
    name: str,
    endpoints: Sequence[EndpointSpec | str],
    ports: Sequence[PortSpec] = (PortSpec(80, "p80"),),
    namespace: str = "ns1",
    slice_name: str | None = None,
    event: str = "ADDED",
) -> dict[str, Any]:
    specs = [EndpointSpec(e) if isinstance(e, str) else e for e in endpoints]
    return watch_event(
        event,
        endpoint_slice_object(namespace, name, slice_name or f"{name}-abc", specs, ports),
    )


def tracer_for(state: ClusterState, config: IptablesConfig, node_ip: str = "192.168.0.2") -> Tracer:
    """Apply a full render to a validating fake kernel and trace over what it holds."""
    state.drain()
    fake = FakeIptables()
    fake.restore(render(state, config).text.encode())
    return Tracer(fake.tables, node_ips=(node_ip,))


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def save_tables(text: str) -> dict[str, dict[str, list[str]]]:
    return {name: table.chains for name, table in parse_save(text).items()}
