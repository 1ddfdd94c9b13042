"""Benchmarks of the reconciler's hot paths against the targets of issue #2 (run by nox -s bench).

Figures land in pytest-benchmark's table and JSON; the asserts check the targets on the
median of several rounds, since these machines are shared and noisy.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.eventlog import SyntheticCluster, write_log
from reconciler.iptables.render import IptablesConfig, RenderedRules, render
from reconciler.state import ClusterState
from tests.workloads import apply_event, churn_events, replay

pytestmark = pytest.mark.bench
CONFIG = IptablesConfig(cluster_cidr="10.244.0.0/16")
SERVICES, ENDPOINTS = 10_000, 10


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("logs")
    cluster = SyntheticCluster(SERVICES, ENDPOINTS)
    out = {"state": root / "state.jsonl", "churn": root / "churn.jsonl"}
    write_log(out["state"], cluster.initial_events())
    write_log(out["churn"], churn_events(cluster, changes=20_000))
    return out


@pytest.fixture(scope="module")
def state(logs: dict[str, Path]) -> ClusterState:
    st, _ = replay(logs["state"])
    st.drain()
    return st


def test_replay_parse_and_fold(
    benchmark: Any, logs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Parse + fold 40,000 events (10,000 services and slices, then 20,000 slice changes)."""
    _, count = benchmark.pedantic(replay, args=(logs["churn"],), rounds=5, iterations=1)
    rate = count / benchmark.stats.stats.median
    benchmark.extra_info.update(events=count, events_per_s=round(rate))
    with capsys.disabled():
        print(
            f"\nreplay: {count} events, median {benchmark.stats.stats.median:.3f} s = {rate:,.0f} events/s"
        )
    assert rate >= 50_000, f"replay at {rate:,.0f} events/s"


def test_drain_10k(benchmark: Any, logs: dict[str, Path]) -> None:
    """The sync's first step: merge slices into sorted endpoint lists for 10,000 services."""

    def setup() -> tuple[tuple[ClusterState], dict[str, Any]]:
        return (replay(logs["state"])[0],), {}

    benchmark.pedantic(lambda st: st.drain(), setup=setup, rounds=3, iterations=1)


def test_full_render_10k_services(benchmark: Any, state: ClusterState) -> None:
    rendered: RenderedRules = benchmark.pedantic(
        render, args=(state, CONFIG), rounds=5, iterations=1
    )
    benchmark.extra_info.update(rules=rendered.rules_written, bytes=len(rendered.text))
    assert rendered.endpoints == SERVICES * ENDPOINTS
    assert benchmark.stats.stats.median <= 1.0


def test_full_render_1k_services(benchmark: Any, logs: dict[str, Path], tmp_path: Path) -> None:
    small = tmp_path / "1k.jsonl"
    write_log(small, SyntheticCluster(1_000, ENDPOINTS).initial_events())
    st, _ = replay(small)
    st.drain()
    benchmark.pedantic(render, args=(st, CONFIG), rounds=10, iterations=1)


def test_partial_render_after_one_endpoint_change_10k(benchmark: Any, state: ClusterState) -> None:
    full = render(state, CONFIG)
    cluster = SyntheticCluster(SERVICES, ENDPOINTS)

    apply_event(state, cluster.replace_one_endpoint(4242, 500_000))
    changed = state.drain()
    assert len(changed) == 1
    rendered = benchmark.pedantic(
        render,
        args=(state, CONFIG),
        kwargs={"changed": changed, "previous": full.port_chains, "missing_jumps": ()},
        rounds=10,
        iterations=1,
    )
    nat = rendered.text.split("*nat\n", 1)[1]
    per_service = [l for l in nat.splitlines() if l.startswith((":KUBE-SVC-", ":KUBE-SEP-"))]
    # The changed service's SVC chain, its 10 SEP chains, and the replaced SEP (flushed, deleted).
    assert len(per_service) == 1 + ENDPOINTS + 1
    assert rendered.deleted_chains and len(rendered.deleted_chains) == 1
    assert nat.count("-A KUBE-SERVICES") == SERVICES + 1
    benchmark.extra_info.update(
        bytes=len(rendered.text), rules=rendered.rules_written, full_bytes=len(full.text)
    )


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent
# (here the pytest process) across exec, while VmHWM belongs to this process's memory alone.
RSS_PROBE = """
import sys
from pathlib import Path
from tests.workloads import replay
from reconciler.iptables.render import IptablesConfig, render
def peak_mb():
    status = Path("/proc/self/status").read_text()
    return next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")) // 1024
state, _ = replay(Path(sys.argv[1]))
state.drain()
held = peak_mb()
render(state, IptablesConfig(cluster_cidr="10.244.0.0/16"))
print(held, peak_mb())
"""


def test_state_10k_fits_in_300mb(logs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent.parent
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(logs["state"])],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    state_mb, with_render_mb = (int(x) for x in out.stdout.split())
    with capsys.disabled():
        print(
            f"\npeak RSS holding the 10,000 x 10 state: {state_mb} MB;"
            f" with one full render on top: {with_render_mb} MB"
        )
    assert state_mb <= 300


def test_fairness_statistics(benchmark: Any) -> None:
    """Jain, max/min, CV and the chi-square p-value over 100 backends (pure arithmetic)."""
    from harness.fairness import fairness

    rng = random.Random(3)
    counts = [0] * 100
    for _ in range(100_000):
        counts[rng.randrange(100)] += 1
    result = benchmark(fairness, counts)
    assert 0.99 < result.jain <= 1.0
