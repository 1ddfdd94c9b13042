"""The regression gate: comparison rules on doctored baselines, and real runs of its
benchmarks with a real 2x slowdown injected into the code under test."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import gate
from tests.cli import ROOT

COMMITTED = ROOT / "results" / "baseline" / "benchmarks.json"


def doc(
    times: dict[str, float], counters: dict[str, dict[str, int]] | None = None
) -> dict[str, Any]:
    """A pytest-benchmark JSON document with the given minimum times."""
    counters = counters or {}
    return {
        "benchmarks": [
            {
                "name": name,
                "stats": {"min": t, "median": t * 1.1},
                "extra_info": {"counters": counters[name]} if name in counters else {},
            }
            for name, t in times.items()
        ]
    }


TIMES = {"test_calibration": 0.07, "test_full_render[10000]": 0.3, "test_fairness_statistics": 2e-5}
COUNTERS = {"test_full_render[10000]": {"iptables_restore_bytes": 60_000_000}}


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def gate_main(tmp_path: Path, baseline: dict[str, Any], current: dict[str, Any]) -> int:
    return gate.main(
        [
            "--baseline", str(write(tmp_path / "base.json", baseline)),
            "--current", str(write(tmp_path / "cur.json", current)),
        ]
    )  # fmt: skip


def scaled(
    document: dict[str, Any], factor: float, *, names: set[str] | None = None
) -> dict[str, Any]:
    out = copy.deepcopy(document)
    for bench in out["benchmarks"]:
        if names is None or bench["name"] in names:
            bench["stats"]["min"] *= factor
    return out


def test_unchanged_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate_main(tmp_path, doc(TIMES, COUNTERS), doc(TIMES, COUNTERS)) == 0
    assert "gate passed" in capsys.readouterr().err


def test_baseline_doctored_to_be_2_5x_faster_fails_with_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    others = set(TIMES) - {"test_calibration"}
    faster = scaled(doc(TIMES, COUNTERS), 1 / 2.5, names=others)
    assert gate_main(tmp_path, faster, doc(TIMES, COUNTERS)) == 1
    out = capsys.readouterr()
    assert "gate FAILED: 2 regression(s)" in out.err
    assert "| test_full_render[10000]" in out.out and "REGRESSED" in out.out
    row = next(
        line
        for line in out.out.splitlines()
        if line.startswith("| test_full_render[10000]") and "time" in line
    )
    assert float(row.split("|")[5]) == pytest.approx(2.5)  # by how much


def test_a_slower_machine_is_not_a_regression(tmp_path: Path) -> None:
    # Everything, the calibration loop included, 3x slower: the calibrated times are equal.
    assert gate_main(tmp_path, doc(TIMES, COUNTERS), scaled(doc(TIMES, COUNTERS), 3.0)) == 0


def test_within_the_threshold_passes_and_beyond_fails(tmp_path: Path) -> None:
    name = {"test_full_render[10000]"}
    assert gate_main(tmp_path, doc(TIMES), scaled(doc(TIMES), 1.4, names=name)) == 0
    assert gate_main(tmp_path, doc(TIMES), scaled(doc(TIMES), 1.6, names=name)) == 1


def test_counters_may_only_go_down(tmp_path: Path) -> None:
    more = {"test_full_render[10000]": {"iptables_restore_bytes": 60_000_001}}
    less = {"test_full_render[10000]": {"iptables_restore_bytes": 59_000_000}}
    assert gate_main(tmp_path, doc(TIMES, COUNTERS), doc(TIMES, more)) == 1
    assert gate_main(tmp_path, doc(TIMES, COUNTERS), doc(TIMES, less)) == 0
    rows = gate.compare(gate.load(tmp_path / "base.json"), gate.load(tmp_path / "cur.json"))
    assert [r.verdict for r in rows if r.measure == "iptables_restore_bytes"] == ["improved"]


def test_a_benchmark_or_counter_that_disappears_fails(tmp_path: Path) -> None:
    fewer = {k: v for k, v in TIMES.items() if k != "test_fairness_statistics"}
    assert gate_main(tmp_path, doc(TIMES), doc(fewer)) == 1
    assert gate_main(tmp_path, doc(TIMES, COUNTERS), doc(TIMES)) == 1


def test_a_new_benchmark_is_reported_not_failed(tmp_path: Path) -> None:
    more = {**TIMES, "test_new_thing": 0.01}
    assert gate_main(tmp_path, doc(TIMES), doc(more)) == 0


def test_missing_or_broken_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    assert (
        gate.main(
            ["--baseline", str(missing), "--current", str(write(tmp_path / "c.json", doc(TIMES)))]
        )
        == 2
    )
    assert f"{missing}: no baseline to compare with" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert gate.main(["--baseline", str(broken), "--current", str(tmp_path / "c.json")]) == 2
    assert f"{broken}: not a pytest-benchmark JSON file" in capsys.readouterr().err
    no_calibration = write(tmp_path / "nc.json", doc({"test_x": 1.0}))
    assert (
        gate.main(["--baseline", str(no_calibration), "--current", str(tmp_path / "c.json")]) == 2
    )
    assert "no test_calibration benchmark" in capsys.readouterr().err


def test_the_committed_baseline_covers_every_gate_benchmark() -> None:
    benches = gate.load(COMMITTED)
    expected = {
        "test_calibration", "test_replay_40k_events", "test_full_render[1000]",
        "test_full_render[10000]", "test_partial_render_one_endpoint_change[1000]",
        "test_partial_render_one_endpoint_change[10000]",
        "test_ipvs_sync_one_endpoint_change_10k", "test_fairness_statistics",
    }  # fmt: skip
    assert set(benches) == expected
    counters = benches["test_partial_render_one_endpoint_change[10000]"].counters
    assert set(counters) == {"iptables_lines", "iptables_rules", "iptables_restore_bytes"}
    assert benches["test_ipvs_sync_one_endpoint_change_10k"].counters == {"netlink_ops": 2}


# A pytest plugin that makes the code under test really twice as slow: harness.fairness's
# statistics compute everything twice. Loaded into the benchmark run with -p.
SLOWDOWN_PLUGIN = """
import harness.fairness as f
_real = f.fairness
def twice(counts):
    _real(counts)
    return _real(counts)
def pytest_configure(config):
    f.fairness = twice
"""


def run_gate_benchmarks(out: Path, *extra: str) -> None:
    env = dict(os.environ, PYTHONPATH=f"{out.parent}{os.pathsep}{ROOT}")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/gate", "-m", "gate", "-q", "-p", "no:cacheprovider",
         "-k", "calibration or fairness", f"--benchmark-json={out}", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_a_real_2x_slowdown_fails_and_the_same_code_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kpb_slowdown.py").write_text(SLOWDOWN_PLUGIN)
    base, same, slow = tmp_path / "base.json", tmp_path / "same.json", tmp_path / "slow.json"
    run_gate_benchmarks(base)
    run_gate_benchmarks(same)
    run_gate_benchmarks(slow, "-p", "kpb_slowdown")
    assert gate.main(["--baseline", str(base), "--current", str(same)]) == 0
    assert gate.main(["--baseline", str(base), "--current", str(slow)]) == 1
    out = capsys.readouterr().out
    row = next(
        l
        for l in out.splitlines()
        if l.startswith("| test_fairness_statistics") and "REGRESSED" in l
    )
    # Twice the work: about 2x, more or less what the shared machine adds; above 1.5 it fails.
    assert float(row.split("|")[5]) > gate.THRESHOLD, row
