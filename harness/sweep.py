"""Scale sweep (groundwork for the bench): sync cost per strategy and cluster size, in one node.

For each size and strategy, on clean kernel tables: the initial full sync, then a series of
single-endpoint changes (a pod replaced), then service adds and deletes, each a measured
sync. Strategies: `iptables-full` (a full restore every sync, as the seed article describes),
`iptables-partial` (kube-proxy >= 1.27) and `ipvs` (incremental netlink). Rows match the
bench's syncs.csv: mode, scenario, services, endpoints_per_service, sync, wall_s, cpu_s,
rules, bytes, ops.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from harness.calibrate import reset_kernel
from harness.eventlog import PortSpec, SyntheticCluster, service_object, watch_event, write_log
from harness.node import NodeInfo
from harness.node.session import report_failures, run_inside
from reconciler.events import decode_line
from reconciler.iptables.kernel import KernelIptables, Variant
from reconciler.iptables.proxier import IptablesProxier
from reconciler.iptables.render import IptablesConfig
from reconciler.ipvs.kernel import KernelIpvs
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import IpvsConfig
from reconciler.logreader import LogReader
from reconciler.metrics import SyncMetrics
from reconciler.state import ClusterState

STRATEGIES = ("iptables-full", "iptables-partial", "ipvs")
COLUMNS = (
    "mode",
    "scenario",
    "services",
    "endpoints_per_service",
    "sync",
    "wall_s",
    "cpu_s",
    "rules",
    "bytes",
    "ops",
)
CIDR = "10.244.0.0/16"


def _row(strategy: str, scenario: str, cluster: SyntheticCluster, m: SyncMetrics) -> dict[str, Any]:
    return {
        "mode": strategy,
        "scenario": scenario,
        "services": cluster.services,
        "endpoints_per_service": cluster.endpoints_per_service,
        "sync": m.sync,
        "wall_s": round(m.wall_s, 6),
        "cpu_s": round(m.cpu_s, 4),
        "rules": m.rules,
        "bytes": m.bytes,
        "ops": m.ops,
    }


def _apply(state: ClusterState, event: dict[str, Any]) -> None:
    decoded = decode_line(orjson.dumps(event))
    assert decoded is not None
    state.apply(decoded)


def sweep_size(
    cluster: SyntheticCluster,
    strategies: Sequence[str],
    changes: int,
    variant: Variant,
    workdir: Path,
) -> Iterator[dict[str, Any]]:
    log = workdir / f"sweep-{cluster.services}.jsonl"
    write_log(log, cluster.initial_events())
    # The same services change, in the same order, for every strategy and every run.
    rng = random.Random(cluster.seed)
    changed = [rng.randrange(cluster.services) for _ in range(changes)]
    for strategy in strategies:
        reset_kernel(variant)
        reader = LogReader(log)
        state = ClusterState()
        state.apply_all(reader.read_available(at_eof=True))
        reader.close()
        proxier: IptablesProxier | IpvsProxier
        if strategy == "ipvs":
            proxier = IpvsProxier(state, KernelIpvs(variant), IpvsConfig(cluster_cidr=CIDR))
        else:
            proxier = IptablesProxier(
                state, KernelIptables(variant), IptablesConfig(cluster_cidr=CIDR)
            )
        always_full = strategy == "iptables-full"
        outcome = proxier.sync(full=True)
        assert outcome is not None
        yield _row(strategy, "initial", cluster, outcome.metrics)
        next_pod = cluster.services * cluster.endpoints_per_service + 1
        for k in range(changes):
            _apply(state, cluster.replace_one_endpoint(changed[k], next_pod + k))
            outcome = proxier.sync(full=always_full)
            assert outcome is not None
            yield _row(strategy, "endpoint-change", cluster, outcome.metrics)
        port = [PortSpec(80, "http", target_port=8080)]
        for k in range(max(1, changes // 2)):
            name = f"added-{k}"
            ip = f"10.100.{k >> 8}.{k & 0xFF}"
            _apply(state, watch_event("ADDED", service_object(cluster.namespace, name, ip, port)))
            outcome = proxier.sync(full=always_full)
            assert outcome is not None
            yield _row(strategy, "service-add", cluster, outcome.metrics)
            _apply(state, watch_event("DELETED", service_object(cluster.namespace, name, ip, port)))
            outcome = proxier.sync(full=always_full)
            assert outcome is not None
            yield _row(strategy, "service-delete", cluster, outcome.metrics)
    reset_kernel(variant)


def run_sweep(
    sizes: Sequence[int],
    endpoints: int,
    strategies: Sequence[str],
    changes: int,
    variant: Variant,
    workdir: Path,
    out: Path,
    progress: Path | None = None,
    seed: int = 1,
) -> int:
    """Runs inside the node; writes syncs.csv rows to `out` as they come. Returns the count.
    One line per sync goes to `progress` if given (the bench's progress display tails it)."""
    count = 0
    per_size = len(strategies) * (1 + changes + 2 * max(1, changes // 2))
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for size in sizes:
            for row in sweep_size(
                SyntheticCluster(size, endpoints, seed=seed), strategies, changes, variant, workdir
            ):
                writer.writerow(row)
                fh.flush()
                count += 1
                if progress is not None:
                    with progress.open("a") as log:
                        log.write(
                            f"sweep: {size} services, {row['mode']} {row['scenario']}"
                            f" {row['wall_s']:.2f} s ({count}/{per_size * len(sizes)} syncs)\n"
                        )
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness sweep",
        description="Sync cost per strategy and cluster size, in one node; writes syncs.csv.",
    )
    parser.add_argument("--node", choices=["uml", "netns"], default="uml")
    parser.add_argument("--sizes", default="100,300,1000", help="comma-separated service counts")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1, help="which services change")
    parser.add_argument("--changes", type=int, default=5, help="endpoint changes per size")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--out", type=Path, default=None, help="default results/sweep-<time>/syncs.csv"
    )
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--progress", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--iptables", default="legacy", choices=["legacy", "nft"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    strategies = [x for x in args.strategies.split(",") if x]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)} (known: {', '.join(STRATEGIES)})")
    if args.inside:
        work = Path(args.inside)
        rows = run_sweep(
            sizes,
            args.endpoints,
            strategies,
            args.changes,
            args.iptables,
            work,
            work / "syncs.csv",
            args.progress,
            args.seed,
        )
        print(json.dumps({"rows": rows}))
        return 0
    out: Path = (
        args.out or Path("results") / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}" / "syncs.csv"
    )

    def command(workdir: Path, info: NodeInfo) -> list[str]:
        return [
            sys.executable,
            "-m",
            "harness",
            "sweep",
            "--inside",
            str(workdir),
            "--sizes",
            args.sizes,
            "--endpoints",
            str(args.endpoints),
            "--changes",
            str(args.changes),
            "--seed",
            str(args.seed),
            "--strategies",
            ",".join(strategies),
            "--iptables",
            info.iptables,
        ]

    def collect(workdir: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workdir / "syncs.csv", out)

    def run() -> int:
        info, inside = run_inside(
            args.node,
            command,
            needs_ipvs="ipvs" in strategies,
            timeout=7200,
            announce=f"sweep of {sizes} ...",
            collect=collect,
        )
        print(
            json.dumps(
                {
                    "node": info.kind,
                    "kernel": info.kernel,
                    "syscall_us": info.syscall_us,
                    "rows": inside["rows"],
                    "syncs_csv": str(out),
                }
            )
        )
        return 0

    return report_failures(run)
