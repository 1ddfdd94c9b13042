"""The scale sweep on a real kernel (UML, which has IPVS): every strategy, every scenario."""

from __future__ import annotations

import csv
import os
import shutil
import sys

import pytest

from harness.node import create_node
from tests.cli import ROOT

pytestmark = pytest.mark.kernel

SCRIPT = """
import sys
from pathlib import Path
from harness.sweep import run_sweep
work = Path(sys.argv[1])
print(run_sweep([20, 60], 3, ["iptables-full", "iptables-partial", "ipvs"], 2, "legacy", work, work / "syncs.csv"))
"""


def test_sweep_measures_each_strategy_and_scenario() -> None:
    if os.geteuid() != 0 or shutil.which("linux.uml") is None:
        pytest.skip("needs root and linux.uml (apt-get install user-mode-linux)")
    with create_node("uml") as node:
        out = node.run(
            [sys.executable, "-c", SCRIPT, str(node.workdir)],
            timeout=600,
            env={"PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 0, out.stderr
        rows = list(csv.DictReader((node.workdir / "syncs.csv").open()))
    assert int(out.stdout.strip()) == len(rows) == 2 * 3 * (1 + 2 + 2)
    by = {(r["mode"], r["scenario"], r["services"]): r for r in rows}
    assert by[("iptables-full", "endpoint-change", "60")]["sync"] == "full"
    assert by[("iptables-partial", "endpoint-change", "60")]["sync"] == "partial"
    assert by[("ipvs", "endpoint-change", "60")]["sync"] == "incremental"
    assert int(by[("ipvs", "endpoint-change", "60")]["ops"]) == 2
    # A partial sync writes fewer rules than a full one of the same state.
    assert int(by[("iptables-partial", "endpoint-change", "60")]["rules"]) < int(
        by[("iptables-full", "endpoint-change", "60")]["rules"]
    )
    assert all(float(r["wall_s"]) > 0 for r in rows)
