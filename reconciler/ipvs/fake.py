"""A validating in-memory stand-in for the ipvs-mode kernel, for unit tests.

It refuses what the kernel refuses (a duplicate virtual server, a real server of a missing
service, deleting what is not there, an ipset entry of the wrong shape or to a missing set)
and counts netlink operations the way the real adapter does.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Sequence

from reconciler.errors import ApplyError
from reconciler.iptables.fake import FakeIptables
from reconciler.ipvs.diff import Op
from reconciler.ipvs.model import IPSET_BY_NAME, IpvsTable, RealServer, ServiceKey
from reconciler.ipvs.netlink import DestInfo

_ENTRY_SHAPES = {
    "hash:ip,port": re.compile(r"^[\d.]+,(tcp|udp|sctp):\d+$"),
    "hash:ip,port,ip": re.compile(r"^[\d.]+,(tcp|udp|sctp):\d+,[\d.]+$"),
    "hash:ip,port,net": re.compile(r"^[\d.]+,(tcp|udp|sctp):\d+,[\d.]+/\d+$"),
    "bitmap:port": re.compile(r"^\d+$"),
}


class FakeIpvsKernel:
    def __init__(self) -> None:
        self.table = IpvsTable.empty()
        self.connections: dict[tuple[ServiceKey, RealServer], tuple[int, int]] = {}
        self.sets: dict[str, set[str]] = {}
        self.bound: set[str] | None = None  # None: no kube-ipvs0 yet
        self.iptables = FakeIptables()
        self.netlink_ops = 0
        self.fail_next: str | None = None

    def ipvs_table(self) -> IpvsTable:
        return IpvsTable(
            dict(self.table.services), {k: dict(v) for k, v in self.table.destinations.items()}
        )

    def _fail(self, op: Op, code: int) -> None:
        raise ApplyError(f"IPVS {op.describe()} failed: {os.strerror(code)}")

    def ipvs_apply(self, ops: Sequence[Op]) -> None:
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            raise ApplyError(message)
        for op in ops:
            self.netlink_ops += 1
            key = op.service.key
            services, dests = self.table.services, self.table.destinations
            if op.kind == "add_service":
                if key in services:
                    self._fail(op, errno.EEXIST)
                services[key], dests[key] = op.service, {}
            elif op.kind in ("set_service", "del_service") and key not in services:
                self._fail(op, errno.ESRCH)
            elif op.kind == "set_service":
                services[key] = op.service
            elif op.kind == "del_service":
                del services[key], dests[key]
            else:
                assert op.dest is not None
                if key not in services:
                    self._fail(op, errno.ESRCH)
                present = op.dest in dests[key]
                if op.kind == "add_dest" and present:
                    self._fail(op, errno.EEXIST)
                if op.kind in ("set_dest", "del_dest") and not present:
                    self._fail(op, errno.ENOENT)
                if op.kind == "del_dest":
                    del dests[key][op.dest]
                else:
                    dests[key][op.dest] = op.weight

    def destinations(self, key: ServiceKey) -> dict[RealServer, DestInfo]:
        return {
            rs: DestInfo(w, *self.connections.get((key, rs), (0, 0)))
            for rs, w in self.table.destinations.get(key, {}).items()
        }

    def ipset_entries(self) -> dict[str, set[str]]:
        return {name: set(entries) for name, entries in self.sets.items()}

    def ipset_apply(
        self, add: Iterable[tuple[str, str]], delete: Iterable[tuple[str, str]], create: bool
    ) -> None:
        if create:
            for name in IPSET_BY_NAME:
                self.sets.setdefault(name, set())
        for name, entry in add:
            if name not in self.sets:
                raise ApplyError(f"ipset add {name} {entry}: the set does not exist")
            if not _ENTRY_SHAPES[IPSET_BY_NAME[name].type].match(entry):
                raise ApplyError(
                    f"ipset add {name} {entry}: not an entry of {IPSET_BY_NAME[name].type}"
                )
            self.sets[name].add(entry)
        for name, entry in delete:
            self.sets.get(name, set()).discard(entry)

    def addresses(self) -> set[str]:
        return set(self.bound or ())

    def address_apply(self, add: Iterable[str], delete: Iterable[str]) -> None:
        add, delete = list(add), list(delete)
        if add or delete:
            self.bound = self.bound or set()
            self.bound |= set(add)
            self.bound -= set(delete)
