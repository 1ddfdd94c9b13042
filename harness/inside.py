"""Runs inside a node (the UML guest, or the host netns node): pods, reconciler, traffic.

`python -m harness.inside smoke ...` sets up the node's pod network, starts the reconciler
with `run --follow` on an event log, creates the pods in Kubernetes order (backend accepting
before its endpoint is published; endpoint terminating, then removed, before the backend
stops), sends the traffic and prints one JSON line. Whatever it created inside the node is
removed before it exits, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.backend import BACKEND_PORT, PodBackends
from harness.eventlog import PortSpec
from harness.pods import Pod, create_pods, delete_pods, pod_ip, setup_node_network
from harness.publisher import EventPublisher, ServiceSlice
from harness.reconciler_proc import output_tail, running_reconciler

SERVICE_IP = "10.96.0.100"
NODE_NAME = "kpbench-node"  # the pods' nodeName, so the reconciler sees them as local


class InjectedFailure(RuntimeError):
    """Raised on purpose (--fail-at) to test that a failed run cleans up."""


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def smoke(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir)
    log, metrics = work / "events.jsonl", work / "metrics.jsonl"
    log.write_bytes(b"")
    node_prefix = os.environ.get("KPBENCH_NODE", "")
    pods = [
        Pod(f"web-{i}", f"{node_prefix}-web-{i}" if node_prefix else f"web-{i}", pod_ip(i), i)
        for i in range(args.pods)
    ]
    backends = PodBackends()
    publisher = EventPublisher(log, metrics, NODE_NAME)
    created: list[Pod] = []
    try:
        await setup_node_network()
        async with running_reconciler(
            log,
            metrics,
            args.mode,
            min_sync_period=args.min_sync_period,
            iptables=args.iptables,
            output=work / "reconciler.log",
        ) as reconciler:
            try:
                return await _smoke_traffic(args, pods, backends, publisher, reconciler, created)
            finally:
                await backends.stop_all()
                if created:
                    await delete_pods(created)
    finally:
        publisher.close()


async def _smoke_traffic(
    args: argparse.Namespace,
    pods: list[Pod],
    backends: PodBackends,
    publisher: EventPublisher,
    reconciler: asyncio.subprocess.Process,
    created: list[Pod],
) -> dict[str, Any]:
    publisher.alive = lambda: reconciler.returncode is None
    svc = ServiceSlice("default", "web", SERVICE_IP, PortSpec(80, "http", target_port=BACKEND_PORT))
    publisher.add_service(svc)

    before_mb = mem_available_mb()
    created.extend(pods)
    await create_pods(pods)
    for pod in pods:  # accepting connections before the endpoint is published
        await backends.start(pod.name, pod.netns_path)
    pods_mb = before_mb - mem_available_mb()
    if args.fail_at == "pods":
        raise InjectedFailure("failure injected after creating the pods")
    for pod in pods:
        svc.endpoints[pod.name] = (pod.ip, True, True, False)
    publisher.publish(svc, "ADDED")
    await publisher.wait_applied()

    traffic = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.traffic",
        "--host",
        SERVICE_IP,
        "--port",
        "80",
        "--requests",
        str(args.requests),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await traffic.communicate()
    result: dict[str, Any] = json.loads(out)

    # Kubernetes order on removal: terminating, then removed, then the backend stops.
    for pod in pods:
        svc.endpoints[pod.name] = (pod.ip, False, True, True)
    publisher.publish(svc)
    await publisher.wait_applied()
    svc.endpoints.clear()
    publisher.publish(svc)
    await publisher.wait_applied()
    result["pods_mb"] = round(pods_mb, 1)
    result["programming_latency_s"] = [round(x, 4) for x in publisher.latencies]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.inside")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("smoke")
    s.add_argument("--mode", default="iptables")
    s.add_argument("--pods", type=int, default=4)
    s.add_argument("--requests", type=int, default=400)
    s.add_argument("--workdir", required=True)
    s.add_argument("--min-sync-period", default="200ms")
    s.add_argument("--iptables", choices=["legacy", "nft"], default="legacy")
    s.add_argument("--fail-at", choices=["pods"], help=argparse.SUPPRESS)
    s.add_argument(
        "--deadline", type=float, default=900.0, help="dump stacks and exit if stuck this long"
    )
    args = parser.parse_args(argv)
    # A run stuck inside the node says where, instead of hanging its caller.
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    try:
        result = asyncio.run(smoke(args))
    except InjectedFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # reported, with the reconciler's own words, not as a traceback
        tail = output_tail(Path(args.workdir) / "reconciler.log")
        print(
            f"error: {type(exc).__name__}: {exc}\nreconciler log (last lines):\n{tail}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
