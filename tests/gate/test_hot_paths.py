"""The regression gate's benchmarks: the reconciler's hot paths, plus a calibration loop.

`python -m harness gate` (nox -s gate) runs these and compares them with
results/baseline/benchmarks.json. Times are compared as multiples of the calibration loop
measured in the same run, so a slower or busier machine does not read as a regression.
Work counters (`extra_info["counters"]`) are deterministic and gated exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.eventlog import SyntheticCluster, write_log
from harness.fairness import fairness
from reconciler.iptables.render import IptablesConfig, render
from reconciler.ipvs.fake import FakeIpvsKernel
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import IpvsConfig
from reconciler.state import ClusterState
from tests.workloads import apply_event, churn_events, replay

pytestmark = pytest.mark.gate
CONFIG = IptablesConfig(cluster_cidr="10.244.0.0/16")
ENDPOINTS = 10
Benchmark = Any  # pytest-benchmark's fixture


def calibration_loop() -> int:
    """Interpreter work of the kinds the reconciler does: dict and tuple churn, string
    formatting and joining, sorting. Its time is the unit the gate measures in."""
    table: dict[str, tuple[str, int]] = {}
    for i in range(40_000):
        key = f"KUBE-SEP-{i * 2654435761 % 1_000_003:07d}"
        table[key] = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i)
    lines = [f"-A {k} -j DNAT --to-destination {ip}:80" for k, (ip, _) in sorted(table.items())]
    return len("\n".join(lines))


def test_calibration(benchmark: Benchmark) -> None:
    assert benchmark.pedantic(calibration_loop, rounds=25, warmup_rounds=2) > 0


def local_calibration() -> float:
    """The calibration loop's best of 4, timed right where a benchmark runs."""
    best = float("inf")
    for _ in range(4):
        started = time.perf_counter()
        calibration_loop()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.fixture(autouse=True)
def calibration_around(request: pytest.FixtureRequest, benchmark: Benchmark) -> Iterator[None]:
    """Times the calibration loop just before and after each benchmark, so the gate can
    divide by what the machine could do at that moment (load changes during a run)."""
    if request.node.name == "test_calibration":
        yield
        return
    before = local_calibration()
    yield
    benchmark.extra_info["calibration_s"] = min(before, local_calibration())


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    out = {}
    for services in (1_000, 10_000):
        out[f"state-{services}"] = root / f"state-{services}.jsonl"
        write_log(out[f"state-{services}"], SyntheticCluster(services, ENDPOINTS).initial_events())
    out["churn"] = root / "churn.jsonl"
    write_log(out["churn"], churn_events(SyntheticCluster(10_000, ENDPOINTS), changes=20_000))
    return out


def drained(log: Path) -> ClusterState:
    state, _ = replay(log)
    state.drain()
    return state


def test_replay_40k_events(benchmark: Benchmark, logs: dict[str, Path]) -> None:
    """Parse + fold 10,000 services and slices, then 20,000 slice changes."""
    _, count = benchmark.pedantic(replay, args=(logs["churn"],), rounds=5, warmup_rounds=1)
    assert count == 40_000


@pytest.mark.parametrize("services", [1_000, 10_000])
def test_full_render(benchmark: Benchmark, logs: dict[str, Path], services: int) -> None:
    state = drained(logs[f"state-{services}"])
    rounds = 15 if services <= 1_000 else 5
    rendered = benchmark.pedantic(render, args=(state, CONFIG), rounds=rounds, warmup_rounds=1)
    assert rendered.endpoints == services * ENDPOINTS
    benchmark.extra_info["counters"] = {"iptables_restore_bytes": len(rendered.text)}


@pytest.mark.parametrize("services", [1_000, 10_000])
def test_partial_render_one_endpoint_change(
    benchmark: Benchmark, logs: dict[str, Path], services: int
) -> None:
    state = drained(logs[f"state-{services}"])
    full = render(state, CONFIG)
    apply_event(
        state, SyntheticCluster(services, ENDPOINTS).replace_one_endpoint(services // 2, 500_000)
    )
    changed = state.drain()
    rendered = benchmark.pedantic(
        render,
        args=(state, CONFIG),
        kwargs={"changed": changed, "previous": full.port_chains, "missing_jumps": ()},
        rounds=25,
        warmup_rounds=2,
    )
    benchmark.extra_info["counters"] = {
        "iptables_lines": rendered.text.count("\n"),
        "iptables_rules": rendered.rules_written,
        "iptables_restore_bytes": len(rendered.text),
    }


def test_ipvs_sync_one_endpoint_change_10k(benchmark: Benchmark, logs: dict[str, Path]) -> None:
    """Drain, desired state of the changed service, diff and bookkeeping (validating fake
    kernel) after one endpoint change at 10,000 services."""
    cluster = SyntheticCluster(10_000, ENDPOINTS)
    state, _ = replay(logs["state-10000"])
    proxier = IpvsProxier(state, FakeIpvsKernel(), IpvsConfig())
    proxier.sync()
    pods = iter(range(700_000, 800_000))

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        apply_event(state, cluster.replace_one_endpoint(5_000, next(pods)))
        return (), {}

    def one_sync() -> int:
        outcome = proxier.sync()
        return 0 if outcome is None else len(outcome.ops)

    ops = benchmark.pedantic(one_sync, setup=setup, rounds=30, warmup_rounds=2)
    assert ops > 0
    benchmark.extra_info["counters"] = {"netlink_ops": ops}


def test_fairness_statistics(benchmark: Benchmark) -> None:
    """Jain, max/min, CV and chi-square p over 100 backends and 100,000 connections."""
    rng = random.Random(3)
    counts = [0] * 100
    for _ in range(100_000):
        counts[rng.randrange(100)] += 1
    stats: Callable[[list[int]], Any] = fairness
    result = benchmark.pedantic(stats, args=(counts,), rounds=200, iterations=5, warmup_rounds=5)
    assert 0.99 < result.jain <= 1.0
