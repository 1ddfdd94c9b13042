"""Churn under traffic and steady-state fairness for one mode (runs inside a node).

`python -m harness.churn --mode iptables|ipvs --out DIR ...` sets up a few Services with
real pods, starts the reconciler on an event log, then:
1. churn: replaces pods one after another in the Kubernetes order (new pod accepting, its
   endpoint published ready; old endpoint terminating, then removed; after a grace period
   its pod stops), each step waiting until the reconciler applied it, while locust sends
   every request on a new connection to every ClusterIP;
2. steady: N new connections per service, no churn (per-connection fairness);
3. keepalive: the same number of requests, K per connection (per-request vs per-connection).
Background services (synthetic, no pods) make the rule set as large as a real node's.

The churn is sequential and planned from the seed, so the event log is the same byte for
byte in every run with the same options; only timings differ. DIR receives events.jsonl,
metrics.jsonl, churn.csv, latency.csv, cpu.json and one locust folder per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import faulthandler
import json
import os
import random
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backend import BACKEND_PORT, PodBackends
from harness.calibrate import reset_kernel
from harness.eventlog import PortSpec, SyntheticCluster, write_log
from harness.pods import Pod, create_pods, delete_pods, pod_ip, setup_node_network
from harness.publisher import EventPublisher, ServiceSlice
from harness.reconciler_proc import output_tail, running_reconciler

NODE_NAME = "kpbench-node"  # the pods' nodeName, so the reconciler sees them as local
NAMESPACE = "churn"
FIRST_POD_INDEX = 60000  # real pods at 10.244.234.x and up, clear of the background's pods


@dataclass(frozen=True)
class Replacement:
    service: int
    old_pod: int  # pod numbers, in creation order
    new_pod: int


def service_ip(i: int) -> str:
    """Inside the service CIDR, clear of the synthetic cluster's 10.96.x.y addresses."""
    return f"10.111.0.{i + 1}"


def churn_plan(seed: int, services: int, pods: int, replacements: int) -> list[Replacement]:
    """Which pod is replaced by which, in order: a random service each time, its oldest pod
    (a rolling update). Pods 0..services*pods-1 exist at the start."""
    rng = random.Random(seed)
    alive = [deque(range(s * pods, (s + 1) * pods)) for s in range(services)]
    next_pod = services * pods
    plan = []
    for _ in range(replacements):
        s = rng.randrange(services)
        old = alive[s].popleft()
        alive[s].append(next_pod)
        plan.append(Replacement(s, old, next_pod))
        next_pod += 1
    return plan


def make_pod(number: int, service: int) -> Pod:
    prefix = os.environ.get("KPBENCH_NODE", "")
    name = f"web-{service}-{number}"
    return Pod(
        name, f"{prefix}-{name}" if prefix else name, pod_ip(FIRST_POD_INDEX + number), number
    )


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process and of its waited-for children (iptables-restore, ...)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


class Progress:
    """Human-readable progress lines in a file the host side tails."""

    def __init__(self, path: Path | None, prefix: str) -> None:
        self.path, self.prefix = path, prefix

    def say(self, text: str) -> None:
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(f"{self.prefix}{text}\n")


async def loadgen(targets: list[str], out: Path, *options: str) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "harness.loadgen", "--out", str(out)]
    for target in targets:
        argv += ["--target", target]
    return await asyncio.create_subprocess_exec(
        *argv, *options, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def finish(proc: asyncio.subprocess.Process, what: str) -> dict[str, Any]:
    out, err = await proc.communicate()
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(
            f"locust ({what}) failed (exit {proc.returncode}): {err.decode()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


class ChurnRun:
    """One mode's run: state shared by the phases, and the cleanup of all it created."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.progress = Progress(Path(args.progress) if args.progress else None, f"{args.mode}: ")
        self.backends = PodBackends()
        self.publisher = EventPublisher(
            self.out / "events.jsonl", self.out / "metrics.jsonl", NODE_NAME
        )
        self.services = [
            ServiceSlice(
                NAMESPACE, f"web-{i}", service_ip(i), PortSpec(80, "http", target_port=BACKEND_PORT)
            )
            for i in range(args.services)
        ]
        self.targets = [f"{s.name}={s.cluster_ip}:80" for s in self.services]
        self.pods: dict[int, Pod] = {}  # alive pods by number
        self.phase = "setup"
        self.phase_of_line: dict[int, str] = {}

    def _publish(self, svc: ServiceSlice, event_type: str = "MODIFIED") -> int:
        line = self.publisher.publish(svc, event_type)
        self.phase_of_line[line] = self.phase
        return line

    async def start_pod(self, number: int, service: int) -> Pod:
        pod = make_pod(number, service)
        await create_pods([pod])
        self.pods[number] = pod
        await self.backends.start(pod.name, pod.netns_path)
        return pod

    async def setup(self) -> None:
        args = self.args
        for i, svc in enumerate(self.services):
            self.publisher.add_service(svc)
            numbers = range(i * args.pods, (i + 1) * args.pods)
            pods = [make_pod(n, i) for n in numbers]
            await create_pods(pods)
            for pod in pods:
                self.pods[pod.index] = pod
                await self.backends.start(pod.name, pod.netns_path)
                svc.endpoints[pod.name] = (pod.ip, True, True, False)
            self._publish(svc, "ADDED")
        await self.publisher.wait_applied(timeout=600)

    async def replace(self, step: Replacement) -> dict[str, Any]:
        svc = self.services[step.service]
        old = self.pods[step.old_pod]
        started = time.time()
        new = await self.start_pod(step.new_pod, step.service)
        svc.endpoints[new.name] = (new.ip, True, True, False)
        await self.publisher.wait_applied(self._publish(svc), timeout=600)
        added = time.time()
        svc.endpoints[old.name] = (old.ip, False, True, True)
        await self.publisher.wait_applied(self._publish(svc), timeout=600)
        del svc.endpoints[old.name]
        await self.publisher.wait_applied(self._publish(svc), timeout=600)
        removed = time.time()
        await asyncio.sleep(self.args.grace)  # what a preStop hook buys in a real cluster
        await self.backends.stop(old.name)
        await delete_pods([old])
        del self.pods[step.old_pod]
        return {
            "service": svc.name,
            "old_pod": old.name,
            "new_pod": new.name,
            "started": round(started, 4),
            "add_s": round(added - started, 4),
            "remove_s": round(removed - added, 4),
            "total_s": round(time.time() - started, 4),
        }

    async def churn(self, reconciler_pid: int) -> dict[str, Any]:
        args = self.args
        plan = churn_plan(args.seed, args.services, args.pods, args.replacements)
        self.phase = "churn"
        traffic = await loadgen(
            self.targets,
            self.out / "churn",
            "--duration",
            str(args.replacements * args.interval * 20 + 600),  # stopped by SIGTERM below
            "--users-per-service",
            "1",
        )
        await asyncio.sleep(1.0)  # traffic flowing before the first replacement
        cpu0, t0 = process_cpu_s(reconciler_pid), time.time()
        rows = []
        with (self.out / "churn.csv").open("w", newline="") as fh:
            writer: csv.DictWriter[str] | None = None
            for k, step in enumerate(plan):
                slot = t0 + k * args.interval
                await asyncio.sleep(max(0.0, slot - time.time()))
                row = await self.replace(step)
                rows.append(row)
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                fh.flush()
                self.progress.say(f"churn {k + 1}/{len(plan)} replacements")
        cpu1, t1 = process_cpu_s(reconciler_pid), time.time()
        await asyncio.sleep(1.0)
        traffic.send_signal(signal.SIGTERM)
        locust = await finish(traffic, "churn")
        return {
            "replacements": len(rows),
            "window_s": round(t1 - t0, 3),
            "window_start": t0,
            "window_end": t1,
            "reconciler_cpu_s": round(cpu1 - cpu0, 3),
            "cpu_per_wall_s": round((cpu1 - cpu0) / (t1 - t0), 4) if t1 > t0 else None,
            "locust": locust,
        }

    async def steady(self, scenario: str, keepalive: int) -> dict[str, Any]:
        self.phase = scenario
        connections = max(1, self.args.connections // keepalive)
        self.progress.say(
            f"{scenario}: {connections} connections x {keepalive} requests per service"
        )
        proc = await loadgen(
            self.targets,
            self.out / scenario,
            "--connections",
            str(connections),
            "--keepalive",
            str(keepalive),
        )
        return await finish(proc, scenario)

    async def run(self) -> dict[str, Any]:
        args = self.args
        result: dict[str, Any] = {"mode": args.mode}
        await setup_node_network()
        async with running_reconciler(
            self.publisher.log,
            self.publisher.metrics,
            args.mode,
            min_sync_period=args.min_sync_period,
            iptables=args.iptables,
            output=self.out / "reconciler.log",
        ) as reconciler:
            self.publisher.alive = lambda: reconciler.returncode is None
            try:
                self.progress.say(
                    f"setting up {args.services} services x {args.pods} pods"
                    f" (+{args.background} background services)"
                )
                await self.setup()
                result["churn"] = await self.churn(reconciler.pid)
                result["steady"] = await self.steady("steady", 1)
                result["keepalive"] = await self.steady("keepalive", args.keepalive_requests)
            finally:
                self.write_latency()
                await self.backends.stop_all()
                await delete_pods(list(self.pods.values()))
        return result

    def write_latency(self) -> None:
        with (self.out / "latency.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(("line", "phase", "latency_s"))
            for line, latency in sorted(self.publisher.programmed.items()):
                writer.writerow((line, self.phase_of_line.get(line, "setup"), f"{latency:.5f}"))


def write_background(log: Path, services: int, seed: int) -> None:
    """The event log starts with the synthetic background cluster (10 endpoints each)."""
    write_log(log, SyntheticCluster(services, 10, seed=seed).initial_events() if services else [])


async def run_mode(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_background(out / "events.jsonl", args.background, args.seed)
    reset_kernel(args.iptables)
    run = ChurnRun(args)
    try:
        result = await run.run()
    finally:
        run.publisher.close()
        await teardown_node_network()
        reset_kernel(args.iptables)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


async def teardown_node_network() -> None:
    """Remove the bridge (its route goes with it), so the next mode starts the same way."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "link", "del", "kpb0", stderr=asyncio.subprocess.DEVNULL
    )
    await proc.wait()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.churn", description=__doc__)
    p.add_argument("--mode", choices=["iptables", "ipvs"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--services", type=int, default=3)
    p.add_argument("--pods", type=int, default=8, help="pods per service")
    p.add_argument("--background", type=int, default=0, help="synthetic services, no pods")
    p.add_argument("--replacements", type=int, default=12)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between replacements")
    p.add_argument("--grace", type=float, default=1.0, help="seconds before a removed pod stops")
    p.add_argument("--connections", type=int, default=2000, help="per service, steady state")
    p.add_argument("--keepalive-requests", type=int, default=100, help="requests per connection")
    p.add_argument("--min-sync-period", default="1s")
    p.add_argument("--iptables", choices=["legacy", "nft"], default="legacy")
    p.add_argument("--progress", help="file to append progress lines to")
    p.add_argument("--deadline", type=float, default=3600.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    try:
        result = asyncio.run(run_mode(args))
    except Exception as exc:  # reported with the reconciler's own words, not as a traceback
        tail = output_tail(Path(args.out) / "reconciler.log")
        print(
            f"error: {type(exc).__name__}: {exc}\nreconciler log (last lines):\n{tail}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps({"mode": result["mode"], "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
