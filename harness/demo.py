"""A small real-kernel comparison, until the full bench exists: full vs partial iptables syncs.

For each iptables backend, in a fresh network namespace: a full sync of S services x E
endpoints by the reconciler, the same ruleset through bare iptables-restore, then one
endpoint change applied by `run --follow` as a partial sync. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from harness.eventlog import SyntheticCluster, encode, write_log
from harness.netns import Netns
from harness.node.base import NodeUnavailable

CIDR = "10.244.0.0/16"


def _reconciler(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


def _wait_for_lines(
    path: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 120
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
            if len(records) >= count:
                return records
        if proc.poll() is not None:
            raise RuntimeError(f"reconciler exited with {proc.returncode}")
        time.sleep(0.02)
    raise TimeoutError(f"no sync metrics in {path} after {timeout} s")


def measure(backend: str, services: int, endpoints: int, workdir: Path) -> dict[str, Any]:
    cluster = SyntheticCluster(services, endpoints)
    log = workdir / f"{backend}.jsonl"
    write_log(log, cluster.initial_events())
    restore_input = subprocess.run(
        _reconciler("render", "--log", str(log), "--cluster-cidr", CIDR),
        capture_output=True,
        check=True,
    ).stdout
    result: dict[str, Any] = {
        "backend": backend,
        "services": services,
        "endpoints_per_service": endpoints,
    }
    with Netns("kpbench-demo") as ns:
        t0 = time.perf_counter()
        ns.exec(f"iptables-{backend}-restore", "--noflush")  # warm-up: loads the table modules
        subprocess.run(
            ns.exec_argv(f"iptables-{backend}-restore", "-w", "5", "--noflush"),
            input=restore_input,
            check=True,
        )
        result["bare_iptables_restore_s"] = round(time.perf_counter() - t0, 4)
    with Netns("kpbench-demo") as ns:
        metrics = workdir / f"{backend}-metrics.jsonl"
        proc = subprocess.Popen(
            ns.exec_argv(
                *_reconciler(
                    "run",
                    "--log",
                    str(log),
                    "--cluster-cidr",
                    CIDR,
                    "--follow",
                    "--iptables",
                    backend,
                    "--min-sync-period",
                    "100ms",
                    "--metrics",
                    str(metrics),
                )
            ),
        )
        try:
            full = _wait_for_lines(metrics, 1, proc)[0]
            with log.open("ab") as fh:
                fh.write(
                    encode(cluster.replace_one_endpoint(services // 2, services * endpoints + 1))
                )
            partial = _wait_for_lines(metrics, 2, proc)[1]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for kind, record in (("full", full), ("partial", partial)):
        for key in ("wall_s", "cpu_s", "rules", "bytes"):
            result[f"{kind}_{key}"] = (
                round(record[key], 4) if isinstance(record[key], float) else record[key]
            )
    result["partial_latency_s"] = round(partial["latency_s"], 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness demo", description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    args = parser.parse_args(argv)
    backends = [b for b in ("legacy", "nft") if shutil.which(f"iptables-{b}-restore")]
    if not backends:
        print("error: no iptables-restore found: apt-get install iptables", file=sys.stderr)
        return 1
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="kpbench-demo-") as tmp:
            for backend in backends:
                print(
                    f"measuring iptables-{backend}: {args.services} services x {args.endpoints} endpoints ...",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(measure(backend, args.services, args.endpoints, Path(tmp)))
    except NodeUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    header = f"{'backend':8} {'bare restore s':>14} {'full sync s':>11} {'full cpu s':>10} {'partial s':>9} {'partial cpu s':>13} {'full bytes':>11} {'partial bytes':>13}"
    print(header)
    for r in rows:
        print(
            f"{r['backend']:8} {r['bare_iptables_restore_s']:>14} {r['full_wall_s']:>11} {r['full_cpu_s']:>10} "
            f"{r['partial_wall_s']:>9} {r['partial_cpu_s']:>13} {r['full_bytes']:>11} {r['partial_bytes']:>13}"
        )
    print(orjson.dumps(rows).decode())
    return 0
