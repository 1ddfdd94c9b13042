"""The thin adapters of ipvs mode: IPVS over netlink, ipset and ip processes, iptables-restore."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from typing import Protocol

from reconciler.errors import ApplyError, ToolMissing
from reconciler.iptables.kernel import IptablesBackend, KernelIptables, Variant, set_sysctl
from reconciler.ipvs.diff import Op
from reconciler.ipvs.model import (
    DUMMY_DEVICE,
    IPSET_BY_NAME,
    IPSETS,
    IpvsTable,
    RealServer,
    ServiceKey,
    ipset_create_line,
)
from reconciler.ipvs.netlink import DestInfo, IpvsNetlink

# The sysctls kube-proxy's ipvs proxier sets (conn_reuse_mode is left alone on kernels >= 5.9).
SYSCTLS = {
    "net.ipv4.vs.conntrack": "1",
    "net.ipv4.vs.expire_nodest_conn": "1",
    "net.ipv4.vs.expire_quiescent_template": "1",
    "net.ipv4.ip_forward": "1",
}


class IpvsBackend(Protocol):
    """What the ipvs proxier needs from the kernel; FakeIpvsKernel implements it for tests."""

    @property
    def iptables(self) -> IptablesBackend: ...

    @property
    def netlink_ops(self) -> int: ...

    def ipvs_table(self) -> IpvsTable: ...

    def ipvs_apply(self, ops: Sequence[Op]) -> None: ...

    def destinations(self, key: ServiceKey) -> dict[RealServer, DestInfo]: ...

    def ipset_entries(self) -> dict[str, set[str]]: ...

    def ipset_apply(
        self, add: Iterable[tuple[str, str]], delete: Iterable[tuple[str, str]], create: bool
    ) -> None: ...

    def addresses(self) -> set[str]: ...

    def address_apply(self, add: Iterable[str], delete: Iterable[str]) -> None: ...


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ApplyError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout


class KernelIpvs:
    """The current network namespace's IPVS, ipsets, kube-ipvs0 and iptables."""

    def __init__(self, iptables_variant: Variant | None = None) -> None:
        for tool, package in (("ipset", "ipset"), ("ip", "iproute2")):
            if shutil.which(tool) is None:
                raise ToolMissing(f"{tool} not found: apt-get install {package}")
        self.netlink = IpvsNetlink()
        self._iptables = KernelIptables(iptables_variant)
        for name, value in SYSCTLS.items():
            set_sysctl(name, value)

    @property
    def iptables(self) -> IptablesBackend:
        return self._iptables

    @property
    def netlink_ops(self) -> int:
        return self.netlink.messages_sent

    def ipvs_table(self) -> IpvsTable:
        return self.netlink.table()

    def ipvs_apply(self, ops: Sequence[Op]) -> None:
        self.netlink.apply(ops)

    def destinations(self, key: ServiceKey) -> dict[RealServer, DestInfo]:
        return self.netlink.destinations(key)

    def ipset_entries(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for line in _run(["ipset", "save"]).splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "add" and parts[1] in IPSET_BY_NAME:
                out.setdefault(parts[1], set()).add(parts[2])
            elif len(parts) >= 2 and parts[0] == "create" and parts[1] in IPSET_BY_NAME:
                out.setdefault(parts[1], set())
        return out

    def ipset_apply(
        self, add: Iterable[tuple[str, str]], delete: Iterable[tuple[str, str]], create: bool
    ) -> None:
        lines = [ipset_create_line(info) for info in IPSETS] if create else []
        lines += [f"add {name} {entry}" for name, entry in add]
        lines += [f"del {name} {entry}" for name, entry in delete]
        if lines:
            # -exist: creating an existing set, adding a present or deleting an absent
            # entry is not an error, so a repeated full sync converges.
            _run(["ipset", "-exist", "restore"], "\n".join(lines) + "\n")

    def addresses(self) -> set[str]:
        out = subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "dev", DUMMY_DEVICE],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return {line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line}

    def address_apply(self, add: Iterable[str], delete: Iterable[str]) -> None:
        add, delete = list(add), list(delete)
        if not add and not delete:
            return
        lines = []
        if (
            subprocess.run(["ip", "link", "show", DUMMY_DEVICE], capture_output=True).returncode
            != 0
        ):
            lines.append(f"link add {DUMMY_DEVICE} type dummy")
        lines += [f"address add {ip}/32 dev {DUMMY_DEVICE}" for ip in add]
        lines += [f"address del {ip}/32 dev {DUMMY_DEVICE}" for ip in delete]
        _run(["ip", "-force", "-batch", "-"], "\n".join(lines) + "\n")
