"""`python -m harness bench`: the iptables-vs-ipvs comparison, in one node, into results/<run-id>/.

Phases, all in the same node kernel: (1) the scale sweep (harness/sweep.py) for
iptables-full, iptables-partial and ipvs; (2) for each mode, churn under locust traffic,
steady-state fairness and a keep-alive run (harness/churn.py). Raw files are gathered after
each phase, so Ctrl-C or a failure keeps what was measured; the report and plots are then
built from them (harness/report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import itertools
import json
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.node import create_node
from harness.node.base import Node, NodeUnavailable
from harness.results import gather_mode

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "kpbench",
    "orjson",
    "pandas",
    "numpy",
    "locust",
    "matplotlib",
    "pyroute2",
    "kubernetes",
)


@dataclass(frozen=True)
class BenchPlan:
    """What a run measures. The presets are QUICK and FULL; options override fields."""

    sizes: tuple[int, ...]
    changes: int  # endpoint changes per size and strategy (plus changes//2 adds and deletes)
    background: int  # synthetic services beside the churned ones
    replacements: int  # pods replaced during the churn, per mode
    connections: int  # new connections per service at steady state
    endpoints: int = 10
    modes: tuple[str, ...] = ("iptables", "ipvs")
    services: int = 3
    pods: int = 8
    interval_s: float = 1.0
    grace_s: float = 1.0
    keepalive_requests: int = 100
    min_sync_period: str = "1s"
    seed: int = 1

    @property
    def strategies(self) -> tuple[str, ...]:
        out: list[str] = []
        if "iptables" in self.modes:
            out += ["iptables-full", "iptables-partial"]
        if "ipvs" in self.modes:
            out.append("ipvs")
        return tuple(out)


QUICK = BenchPlan(
    sizes=(100, 300, 1000), changes=3, background=100, replacements=8, connections=2000
)
FULL = BenchPlan(
    sizes=(100, 1000, 5000, 10000), changes=5, background=1000, replacements=30, connections=10000
)


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through measured points, extended along the last segment."""
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1 or (x1, y1) == points[-1]:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


# Seconds per sync in the UML node, by cluster size: iptables (median of full and partial
# syncs) and an ipvs initial load, from the example full run (results/example).
UML_IPTABLES_SYNC = ((0, 2.0), (100, 2.7), (1000, 5.0), (5000, 10.0), (10000, 30.0))
UML_IPVS_INITIAL = ((0, 1.0), (100, 1.2), (1000, 4.5), (5000, 6.0), (10000, 13.0))


def estimate_s(plan: BenchPlan, node: str) -> float:
    """Rough run time, from the example full run on the 2-core machines (UML) and the host
    kernel being ~20x faster at the same work."""
    speed = 1.0 if node == "uml" else 0.05
    syncs = 1 + plan.changes + 2 * max(1, plan.changes // 2)
    total = 10.0
    for size in plan.sizes:
        if "iptables" in plan.modes:
            total += 2 * syncs * speed * _interpolate(UML_IPTABLES_SYNC, size) + 4
        if "ipvs" in plan.modes:
            total += speed * (_interpolate(UML_IPVS_INITIAL, size) + 0.1 * size**0.5 * syncs) + 4
    # New connections and keep-alive requests per second through locust.
    new_rate, keep_rate = (210, 550) if node == "uml" else (1200, 3000)
    for mode in plan.modes:
        # A replacement is three applied events plus the pod's start and stop. In UML with
        # traffic running it took ~14 s (iptables, 20 background services), ~31 s (iptables,
        # 1,000) and ~4 s (ipvs); on the host kernel ~1.5 s.
        if node == "uml":
            per_step = 12 + 0.02 * plan.background if mode == "iptables" else 4.0
        else:
            per_step = 1.5
        total += 20 + plan.replacements * max(plan.interval_s, per_step)
        total += plan.services * plan.connections * (1 / new_rate + 1 / keep_rate)
    return total


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def keep_gzipped(src: Path, dst: Path) -> None:
    """A byte-stable gzip copy (no timestamp in the header)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with (
        src.open("rb") as fin,
        dst.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class ProgressDisplay:
    """Prints the node's progress lines (and the elapsed time) to stderr as they appear."""

    def __init__(self, path: Path, started: float, estimate: float) -> None:
        self.path, self.started, self.estimate = path, started, estimate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._offset = 0

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(
            f"[{elapsed / 60:5.1f} of ~{self.estimate / 60:.0f} min] {text}",
            file=sys.stderr,
            flush=True,
        )

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def poll(self) -> None:
        with contextlib.suppress(OSError):
            with self.path.open() as fh:
                fh.seek(self._offset)
                data = fh.read()
            cut = data.rfind("\n") + 1
            self._offset += cut
            for line in data[:cut].splitlines():
                self.say(line)

    def __enter__(self) -> ProgressDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()


class Bench:
    """One run: its folder, its meta.json, and the phases inside one node."""

    def __init__(self, plan: BenchPlan, node_kind: str, out: Path, command: str) -> None:
        self.plan, self.node_kind, self.out = plan, node_kind, out
        self.meta: dict[str, Any] = {
            "run_id": out.name,
            "status": "running",
            "command": command,
            "seed": plan.seed,
            "plan": asdict(plan),
            "started": now(),
            "ended": None,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "packages": package_versions(),
            "host_kernel": platform.release(),
            "node": node_kind,
            "kernel": None,  # uname -r inside the node
            "syscall_us": None,  # its calibration: absolute times in UML are not native
            "node_info": None,
            "event_logs": {},  # name -> sha256: the same seed and options give the same digests
        }

    def write_meta(self) -> None:
        (self.out / "meta.json").write_text(json.dumps(self.meta, indent=1) + "\n")

    def run(self) -> int:
        self.out.mkdir(parents=True)
        self.write_meta()
        estimate = estimate_s(self.plan, self.node_kind)
        started = time.monotonic()
        display: ProgressDisplay | None = None
        print(
            f"kpbench: {self.plan.sizes} services x {self.plan.endpoints} endpoints, modes"
            f" {', '.join(self.plan.modes)}, node {self.node_kind}; this takes roughly"
            f" {estimate / 60:.0f} min. Results: {self.out}",
            file=sys.stderr,
            flush=True,
        )
        code = 1
        try:
            with create_node(self.node_kind) as node:
                self.meta.update(
                    kernel=node.info.kernel,
                    syscall_us=node.info.syscall_us,
                    node_info=asdict(node.info),
                )
                self.write_meta()
                if "ipvs" in self.plan.modes and not node.info.has_ipvs:
                    raise NodeUnavailable(
                        f"the {self.node_kind} node's kernel ({node.info.kernel}) has no IPVS;"
                        " use --node uml, or --modes iptables"
                    )
                with ProgressDisplay(node.workdir / "progress.log", started, estimate) as display:
                    display.say(
                        f"{self.node_kind} node up in {node.info.start_s} s (kernel {node.info.kernel})"
                    )
                    self.sweep(node)
                    for mode in self.plan.modes:
                        self.churn(node, mode)
            self.meta["status"] = "complete"
            code = 0
        except KeyboardInterrupt:
            self.meta["status"] = "interrupted"
            print("interrupted: the node was stopped; keeping what was measured", file=sys.stderr)
            code = 130
        except (NodeUnavailable, PhaseFailed) as exc:
            self.meta["status"] = "failed"
            self.meta["error"] = str(exc)
            print(f"error: {exc}", file=sys.stderr)
        finally:
            self.meta["ended"] = now()
            self.meta["elapsed_s"] = round(time.monotonic() - started, 1)
            self.write_meta()
        if any(self.out.glob("*.csv")) or any(self.out.glob("*.csv.gz")):
            from harness.report import build

            report = build(self.out)
            print(f"report: {report}", file=sys.stderr)
        print(
            json.dumps(
                {
                    "run": str(self.out),
                    "status": self.meta["status"],
                    "elapsed_s": self.meta["elapsed_s"],
                }
            )
        )
        return code

    def _run_phase(self, node: Node, argv: list[str], what: str) -> None:
        done = node.run(argv, timeout=6 * 3600)
        if done.returncode != 0:
            raise PhaseFailed(
                f"{what} failed in the node (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )

    def sweep(self, node: Node) -> None:
        plan, work = self.plan, node.workdir
        argv = [
            sys.executable, "-m", "harness", "sweep", "--inside", str(work),
            "--sizes", ",".join(map(str, plan.sizes)), "--endpoints", str(plan.endpoints),
            "--changes", str(plan.changes), "--strategies", ",".join(plan.strategies),
            "--iptables", node.info.iptables, "--seed", str(plan.seed),
            "--progress", str(work / "progress.log"),
        ]  # fmt: skip
        try:
            self._run_phase(node, argv, "the scale sweep")
        finally:  # also on Ctrl-C: what was measured so far
            syncs = work / "syncs.csv"
            if syncs.exists():
                (self.out / "syncs.csv").write_bytes(syncs.read_bytes())
            # The sweep's logs are large: their digests show two runs replayed the same events.
            for log in sorted(work.glob("sweep-*.jsonl")):
                self.meta["event_logs"][log.name] = sha256_of(log)
            self.write_meta()

    def churn(self, node: Node, mode: str) -> None:
        plan, work = self.plan, node.workdir
        raw = work / f"churn-{mode}"
        argv = [
            sys.executable, "-m", "harness.churn", "--mode", mode, "--out", str(raw),
            "--seed", str(plan.seed), "--services", str(plan.services), "--pods", str(plan.pods),
            "--background", str(plan.background), "--replacements", str(plan.replacements),
            "--interval", str(plan.interval_s), "--grace", str(plan.grace_s),
            "--connections", str(plan.connections),
            "--keepalive-requests", str(plan.keepalive_requests),
            "--min-sync-period", plan.min_sync_period, "--iptables", node.info.iptables,
            "--progress", str(work / "progress.log"),
        ]  # fmt: skip
        try:
            self._run_phase(node, argv, f"the {mode} churn run")
        finally:
            if raw.exists():
                gather_mode(mode, raw, self.out, plan.services + plan.background, plan.pods)
                log = raw / "events.jsonl"
                if log.exists():
                    self.meta["event_logs"][f"churn-{mode}.jsonl"] = sha256_of(log)
                    keep_gzipped(log, self.out / "events" / f"{mode}.jsonl.gz")
                self.write_meta()


class PhaseFailed(RuntimeError):
    """A phase's program failed inside the node; the message carries its stderr."""


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, BenchPlan]:
    p = argparse.ArgumentParser(prog="python -m harness bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes and counts (<= 10 min)")
    p.add_argument("--node", choices=["uml", "netns"], default="uml")
    p.add_argument(
        "--out", type=Path, help="run folder (default results/<time>-<node>-<quick|full>)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--sizes", help="comma-separated service counts for the sweep")
    p.add_argument("--changes", type=int, help="endpoint changes per size and strategy")
    p.add_argument("--modes", help="iptables,ipvs (default both)")
    p.add_argument("--background", type=int, help="synthetic services beside the churned ones")
    p.add_argument("--replacements", type=int, help="pods replaced during the churn, per mode")
    p.add_argument("--connections", type=int, help="new connections per service at steady state")
    p.add_argument("--services", type=int, help="services with real pods")
    p.add_argument("--pods", type=int, help="pods per service")
    p.add_argument("--interval", type=float, help="seconds between pod replacements")
    p.add_argument("--min-sync-period", help="the reconciler's, during churn (default 1s)")
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.sizes:
        try:
            overrides["sizes"] = tuple(int(x) for x in args.sizes.split(",") if x)
        except ValueError:
            p.error(f"--sizes {args.sizes!r}: expected comma-separated integers")
    if args.modes:
        modes = tuple(m for m in args.modes.split(",") if m)
        if not modes or set(modes) - {"iptables", "ipvs"}:
            p.error(f"--modes {args.modes!r}: expected iptables, ipvs or both")
        overrides["modes"] = modes
    for name in (
        "seed",
        "changes",
        "background",
        "replacements",
        "connections",
        "services",
        "pods",
    ):
        value = getattr(args, name)
        if value is not None:
            if value < (0 if name in ("background", "seed") else 1):
                p.error(f"--{name} must be positive")
            overrides[name] = value
    if args.interval is not None:
        overrides["interval_s"] = args.interval
    if args.min_sync_period:
        overrides["min_sync_period"] = args.min_sync_period
    return args, replace(plan, **overrides)


def default_out(node: str, quick: bool) -> Path:
    return (
        Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{node}-{'quick' if quick else 'full'}"
    )


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    out: Path = args.out or default_out(args.node, args.quick)
    if out.exists() and any(out.iterdir()):
        print(
            f"error: {out} already holds a run; give another --out (nothing was overwritten)",
            file=sys.stderr,
        )
        return 2
    if out.exists():
        out.rmdir()
    command = shlex.join(
        ["python", "-m", "harness", "bench", *(sys.argv[2:] if argv is None else argv)]
    )
    return Bench(plan, args.node, out, command).run()
