"""`python -m harness smoke`: one Service with N pods in a node, R new connections to its ClusterIP."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.fairness import fairness
from harness.node import NodeInfo
from harness.node.session import report_failures, run_inside


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness smoke", description=__doc__)
    parser.add_argument("--node", choices=["uml", "netns"], default="uml")
    parser.add_argument("--mode", choices=["iptables", "ipvs"], default="iptables")
    parser.add_argument("--pods", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--min-sync-period", default="200ms")
    parser.add_argument("--fail-at", choices=["pods"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--deadline",
        type=float,
        default=900.0,
        help="seconds after which a stuck run inside the node dumps its stacks and exits",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.pods <= 60000:
        parser.error("--pods must be between 1 and 60000")

    def command(workdir: Path, info: NodeInfo) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "harness.inside",
            "smoke",
            "--mode",
            args.mode,
            "--pods",
            str(args.pods),
            "--requests",
            str(args.requests),
            "--workdir",
            str(workdir),
            "--min-sync-period",
            args.min_sync_period,
            "--iptables",
            info.iptables,
            "--deadline",
            str(args.deadline),
        ]
        return argv + (["--fail-at", args.fail_at] if args.fail_at else [])

    def run() -> int:
        info, inside = run_inside(
            args.node,
            command,
            needs_ipvs=args.mode == "ipvs",
            timeout=args.deadline + 60,
            announce=f"{args.pods} pods, {args.requests} requests ...",
        )
        print(json.dumps(_result(args.mode, info, inside)))
        return 0 if inside["failed"] == 0 else 1

    return report_failures(run)


def _result(mode: str, info: NodeInfo, inside: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": info.kind,
        "kernel": info.kernel,
        "mode": mode,
        "requests": inside["requests"],
        "failed": inside["failed"],
        "backends": inside["backends"],
        "syscall_us": info.syscall_us,
        "failures": inside["failures"],
        "connections_per_s": inside["connections_per_s"],
        "node_start_s": info.start_s,
        "iptables": info.iptables,
        "pods_mb": inside["pods_mb"],
        "programming_latency_s": inside["programming_latency_s"],
        "fairness": _fairness(inside["backends"]),
    }


def _fairness(backends: dict[str, int]) -> dict[str, float] | None:
    counts = list(backends.values())
    if not counts or not sum(counts):
        return None
    f = fairness(counts)
    return {
        "jain": round(f.jain, 5),
        "max_min": round(f.max_min, 4),
        "cv": round(f.cv, 5),
        "p_uniform": round(f.p_uniform, 5),
    }
