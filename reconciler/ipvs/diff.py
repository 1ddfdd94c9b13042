"""Pure diff of IPVS tables: desired vs current, to the operations that turn one into the other.

A real server that is no longer wanted is drained first (weight 0), so established TCP
connections finish; UDP and SCTP ones are deleted at once, as kube-proxy's graceful
termination manager does. The proxier deletes drained ones later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from reconciler.ipvs.model import IpvsTable, RealServer, ServiceKey, VirtualServer


class Op(NamedTuple):
    kind: str  # add_service set_service del_service add_dest set_dest del_dest
    service: VirtualServer
    dest: RealServer | None = None
    weight: int = 0

    def describe(self) -> str:
        what = (
            f"{self.kind} {self.service.key.protocol} {self.service.key.ip}:{self.service.key.port}"
        )
        if self.dest is not None:
            what += f" -> {self.dest.ip}:{self.dest.port} (weight {self.weight})"
        return what


def graceful(key: ServiceKey) -> bool:
    """IsRsGracefulTerminationNeeded: only TCP real servers are drained."""
    return key.protocol == "TCP"


def diff(current: IpvsTable, desired: IpvsTable, keys: Iterable[ServiceKey]) -> list[Op]:
    """Operations for the virtual servers in `keys` (all of them for a full sync).

    Services are added before their real servers and deleted after, so the list applies in
    order. Unwanted TCP real servers get weight 0 (draining), others are deleted.
    """
    adds: list[Op] = []
    dest_ops: list[Op] = []
    deletes: list[Op] = []
    for key in keys:
        want = desired.services.get(key)
        have = current.services.get(key)
        if want is None:
            if have is not None:
                deletes.append(Op("del_service", have))
            continue
        if have is None:
            adds.append(Op("add_service", want))
        elif have != want:
            adds.append(Op("set_service", want))
        want_dests = desired.destinations.get(key, {})
        have_dests = current.destinations.get(key, {}) if have is not None else {}
        for rs, weight in want_dests.items():
            old = have_dests.get(rs)
            if old is None:
                dest_ops.append(Op("add_dest", want, rs, weight))
            elif old != weight:
                dest_ops.append(Op("set_dest", want, rs, weight))
        for rs, weight in have_dests.items():
            if rs in want_dests:
                continue
            if not graceful(key):
                dest_ops.append(Op("del_dest", want, rs))
            elif weight != 0:
                dest_ops.append(Op("set_dest", want, rs, 0))
    return adds + dest_ops + deletes


def apply_ops(table: IpvsTable, ops: Iterable[Op]) -> None:
    """What the kernel holds after `ops` succeeded (bookkeeping, no validation)."""
    for op in ops:
        key = op.service.key
        if op.kind in ("add_service", "set_service"):
            table.services[key] = op.service
            table.destinations.setdefault(key, {})
        elif op.kind == "del_service":
            table.services.pop(key, None)
            table.destinations.pop(key, None)
        elif op.kind in ("add_dest", "set_dest"):
            assert op.dest is not None
            table.destinations.setdefault(key, {})[op.dest] = op.weight
        elif op.kind == "del_dest":
            table.destinations.get(key, {}).pop(op.dest, None)  # type: ignore[arg-type]
