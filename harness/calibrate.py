"""`python -m harness calibrate`: the reconciler against the bare kernel tools, on one node.

Inside one node and one run, on the same S services x E endpoints state:
- iptables: bare `iptables-restore` of our full ruleset on clean tables, our full sync on
  clean tables, and our partial sync after one endpoint change;
- ipvs: bare `ipvsadm -R` of the same IPVS state on a clean table, our full sync on a clean
  table (and the IPVS netlink part of it alone), and our sync after one endpoint change.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

import orjson

from harness.eventlog import SyntheticCluster, write_log
from harness.node import NodeInfo
from harness.node.session import report_failures, run_inside
from reconciler.events import decode_line
from reconciler.iptables.kernel import KernelIptables
from reconciler.iptables.proxier import IptablesProxier
from reconciler.iptables.render import IptablesConfig, render
from reconciler.ipvs.diff import Op
from reconciler.ipvs.kernel import KernelIpvs
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import Aggregate, Delta, IpvsConfig, ipvsadm_save, port_state
from reconciler.logreader import LogReader
from reconciler.state import ClusterState

CIDR = "10.244.0.0/16"


def _sh(cmd: str, stdin: bytes | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(["sh", "-c", cmd], input=stdin, check=True, capture_output=True)
    return time.perf_counter() - t


def _state(log: Path) -> ClusterState:
    reader = LogReader(log)
    state = ClusterState()
    state.apply_all(reader.read_available(at_eof=True))
    reader.close()
    return state


def _one_endpoint_change(cluster: SyntheticCluster, state: ClusterState) -> None:
    event = decode_line(orjson.dumps(cluster.replace_one_endpoint(cluster.services // 2, 700_000)))
    assert event is not None
    state.apply(event)


def reset_kernel(variant: str, *, ipvs: bool = True) -> None:
    """Clean tables before a measurement: kube-proxy's iptables chains, and IPVS, ipsets and
    kube-ipvs0 (which may not exist: errors there are ignored)."""
    script = "".join(
        f"iptables-{variant} -t {t} -F; iptables-{variant} -t {t} -X; " for t in ("nat", "filter")
    )
    if ipvs:
        script += "ipvsadm -C 2>/dev/null; ipset destroy 2>/dev/null; ip link del kube-ipvs0 2>/dev/null; "
    subprocess.run(["sh", "-c", script + "true"], check=True, capture_output=True)


class TimedKernelIpvs(KernelIpvs):
    """The real adapter, timing its IPVS netlink part alone."""

    netlink_s = 0.0

    def ipvs_apply(self, ops: Sequence[Op]) -> None:
        t = time.perf_counter()
        super().ipvs_apply(ops)
        self.netlink_s += time.perf_counter() - t


def measure(
    services: int, endpoints: int, modes: Sequence[str], variant: str, workdir: Path, rounds: int
) -> dict[str, Any]:
    """Runs inside the node. Each figure is the median of `rounds`, each on clean tables,
    bare tool and reconciler alternating, since single runs in UML vary by tens of %."""
    cluster = SyntheticCluster(services, endpoints)
    log = workdir / "calibrate.jsonl"
    write_log(log, cluster.initial_events())
    out: dict[str, Any] = {
        "services": services,
        "endpoints_per_service": endpoints,
        "rounds": rounds,
    }
    if "iptables" in modes:
        config = IptablesConfig(cluster_cidr=CIDR)
        state = _state(log)
        state.drain()
        text = render(state, config).text.encode()
        bare, full, partial = [], [], []
        for _ in range(rounds):
            reset_kernel(variant, ipvs=False)
            bare.append(_sh(f"iptables-{variant}-restore -w 5 --noflush", text))
            reset_kernel(variant, ipvs=False)
            proxier = IptablesProxier(_state(log), KernelIptables(variant), config)  # type: ignore[arg-type]
            synced = proxier.sync(full=True)
            _one_endpoint_change(cluster, proxier.state)
            changed = proxier.sync()
            assert synced is not None and changed is not None
            full.append(synced.metrics.wall_s)
            partial.append(changed.metrics.wall_s)
        out["iptables_restore_s"] = round(median(bare), 4)
        out["reconciler_iptables_full_s"] = round(median(full), 4)
        out["reconciler_iptables_one_endpoint_s"] = round(median(partial), 4)
        out["iptables_full_ratio"] = round(median(full) / median(bare), 3)
        out["iptables_restore_bytes"] = len(text)
        out["iptables_rounds"] = {"bare": _r(bare), "full": _r(full), "one_endpoint": _r(partial)}
        reset_kernel(variant, ipvs=False)
    if "ipvs" in modes:
        config_ipvs = IpvsConfig(cluster_cidr=CIDR)
        state = _state(log)
        state.drain()
        aggregate, delta = Aggregate(), Delta()
        for sp in state.sorted_service_ports():
            aggregate.replace(
                None, port_state(sp, state.endpoints.get(sp.name, ()), config_ipvs), delta
            )
        saved = ipvsadm_save(aggregate.table).encode()
        ipvsadm, netlink, whole, one, ops = [], [], [], [], 0
        for _ in range(rounds):
            _sh("ipvsadm -C")
            ipvsadm.append(_sh("ipvsadm -R", saved))
            _sh("ipvsadm -C")
            kernel = TimedKernelIpvs(variant)  # type: ignore[arg-type]
            proxier_ipvs = IpvsProxier(_state(log), kernel, config_ipvs)
            synced_ipvs = proxier_ipvs.sync(full=True)
            _one_endpoint_change(cluster, proxier_ipvs.state)
            changed_ipvs = proxier_ipvs.sync()
            assert synced_ipvs is not None and changed_ipvs is not None
            netlink.append(kernel.netlink_s)
            whole.append(synced_ipvs.metrics.wall_s)
            one.append(changed_ipvs.metrics.wall_s)
            ops = max(ops, changed_ipvs.metrics.ops)
            kernel.netlink.close()
        out["ipvsadm_restore_s"] = round(median(ipvsadm), 4)
        out["reconciler_ipvs_netlink_s"] = round(median(netlink), 4)
        out["reconciler_ipvs_full_s"] = round(median(whole), 4)
        out["reconciler_ipvs_one_endpoint_s"] = round(median(one), 5)
        out["reconciler_ipvs_one_endpoint_ops"] = ops
        out["ipvs_bulk_ratio"] = round(median(netlink) / median(ipvsadm), 3)
        out["ipvs_rounds"] = {
            "ipvsadm": _r(ipvsadm),
            "netlink": _r(netlink),
            "full": _r(whole),
            "one_endpoint": _r(one),
        }
        _sh("ipvsadm -C")
    return out


def _r(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness calibrate", description=__doc__)
    parser.add_argument("--node", choices=["uml", "netns"], default="uml")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--modes", default="iptables,ipvs", help="comma-separated: iptables, ipvs")
    parser.add_argument(
        "--rounds", type=int, default=3, help="each figure is the median of this many"
    )
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # the node-side half, a work directory
    parser.add_argument("--iptables", default="legacy", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if args.inside:
        print(
            json.dumps(
                measure(
                    args.services,
                    args.endpoints,
                    modes,
                    args.iptables,
                    Path(args.inside),
                    args.rounds,
                )
            )
        )
        return 0

    def command(workdir: Path, info: NodeInfo) -> list[str]:
        return [
            sys.executable,
            "-m",
            "harness",
            "calibrate",
            "--inside",
            str(workdir),
            "--services",
            str(args.services),
            "--endpoints",
            str(args.endpoints),
            "--modes",
            ",".join(modes),
            "--iptables",
            info.iptables,
            "--rounds",
            str(args.rounds),
        ]

    def run() -> int:
        info, inside = run_inside(args.node, command, needs_ipvs="ipvs" in modes, timeout=3600)
        result = {
            "node": info.kind,
            "kernel": info.kernel,
            "syscall_us": info.syscall_us,
            "iptables": info.iptables,
            **inside,
        }
        print(json.dumps(result))
        return 0

    return report_failures(run)
