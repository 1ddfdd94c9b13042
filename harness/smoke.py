"""`python -m harness smoke`: one Service with N pods in a node, R new connections to its ClusterIP."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from harness.node import NodeUnavailable, create_node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness smoke", description=__doc__)
    parser.add_argument("--node", choices=["uml", "netns"], default="uml")
    parser.add_argument("--mode", choices=["iptables", "ipvs"], default="iptables")
    parser.add_argument("--pods", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--min-sync-period", default="200ms")
    parser.add_argument("--fail-at", choices=["pods"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.pods <= 60000:
        parser.error("--pods must be between 1 and 60000")

    try:
        with create_node(args.node) as node:
            if args.mode == "ipvs" and not node.info.has_ipvs:
                print(
                    f"error: the {args.node} node's kernel ({node.info.kernel}) has no IPVS"
                    " (modprobe ip_vs found nothing); use --node uml",
                    file=sys.stderr,
                )
                return 1
            print(
                f"{args.node} node up in {node.info.start_s} s (kernel {node.info.kernel});"
                f" {args.pods} pods, {args.requests} requests ...",
                file=sys.stderr,
                flush=True,
            )
            # A directory the node can write: the UML run directory is shared with the guest.
            workdir = getattr(node, "run_dir", None)
            own_tmp = None
            if workdir is None:
                own_tmp = Path(tempfile.mkdtemp(prefix="kpbench-smoke-"))
                workdir = own_tmp
            try:
                command = [
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
                    node.info.iptables,
                ]
                if args.fail_at:
                    command += ["--fail-at", args.fail_at]
                done = node.run(command, timeout=900)
            finally:
                if own_tmp is not None:
                    shutil.rmtree(own_tmp, ignore_errors=True)
            info = node.info
    except NodeUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the node was stopped and cleaned up", file=sys.stderr)
        return 130
    if done.returncode != 0 or not done.stdout.strip():
        sys.stderr.write(done.stderr)
        print(
            f"error: the smoke run inside the node failed (exit {done.returncode})", file=sys.stderr
        )
        return 1
    inside = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "node": info.kind,
        "kernel": info.kernel,
        "mode": args.mode,
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
    }
    print(json.dumps(result))
    return 0 if result["failed"] == 0 else 1
