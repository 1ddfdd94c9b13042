"""Benchmarks of ipvs mode against issue #4's targets, with `harness calibrate` (needs root).

In one UML node and one run: our IPVS bulk load vs `ipvsadm -R` of the same state
(ratio <= 1.0), our full iptables sync vs bare `iptables-restore` (ratio <= 1.3), and one
endpoint change at 10,000 services in ipvs mode (<= 5 ms).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.eventlog import SyntheticCluster, write_log
from reconciler.events import decode_line
from reconciler.ipvs.fake import FakeIpvsKernel
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import IpvsConfig
from tests.workloads import replay

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parent.parent.parent


def calibrate(*args: str) -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("linux.uml") is None:
        pytest.skip("needs root and linux.uml (apt-get install user-mode-linux)")
    out = subprocess.run(
        [sys.executable, "-m", "harness", "calibrate", "--node", "uml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_calibrate_1k(capsys: pytest.CaptureFixture[str]) -> None:
    r = calibrate("--services", "1000", "--endpoints", "10")
    with capsys.disabled():
        print(f"\ncalibrate uml 1000x10: {json.dumps(r)}")
    assert r["ipvs_bulk_ratio"] <= 1.0  # our IPVS netlink load vs ipvsadm -R
    assert r["reconciler_ipvs_full_s"] <= r["ipvsadm_restore_s"]  # even the whole sync
    assert r["iptables_full_ratio"] <= 1.3
    assert r["reconciler_ipvs_one_endpoint_ops"] <= 2


def test_one_endpoint_change_at_10k_services_ipvs(capsys: pytest.CaptureFixture[str]) -> None:
    r = calibrate("--services", "10000", "--endpoints", "10", "--modes", "ipvs", "--rounds", "1")
    with capsys.disabled():
        print(f"\ncalibrate uml 10000x10 ipvs: {json.dumps(r)}")
    assert r["reconciler_ipvs_one_endpoint_ops"] <= 2
    assert r["reconciler_ipvs_one_endpoint_s"] <= 0.005


def test_ipvs_incremental_sync_after_one_change_10k(benchmark: Any, tmp_path: Path) -> None:
    """The in-process part of an incremental ipvs sync at 10,000 services x 10 endpoints
    (drain, diff, bookkeeping), against the validating fake kernel."""
    cluster = SyntheticCluster(10_000, 10)
    log = tmp_path / "10k.jsonl"
    write_log(log, cluster.initial_events())
    state, _ = replay(log)
    proxier = IpvsProxier(state, FakeIpvsKernel(), IpvsConfig())
    proxier.sync()
    pods = iter(range(700_000, 800_000))

    def one_change() -> int:
        event = decode_line(orjson.dumps(cluster.replace_one_endpoint(5000, next(pods))))
        assert event is not None
        state.apply(event)
        outcome = proxier.sync()
        return 0 if outcome is None else len(outcome.ops)

    ops = benchmark.pedantic(one_change, rounds=20, iterations=1)
    assert ops == 2
