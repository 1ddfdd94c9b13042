"""`python -m harness bench` end to end in real kernels: a small run of both modes in UML, the
same seed giving the same event logs and rule sets, and Ctrl-C keeping what was measured."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.netns import existing
from tests.cli import ROOT

pytestmark = pytest.mark.kernel


def bench(out: Path, *options: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--out", str(out), *options],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def needs_root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")


def needs_uml() -> None:
    needs_root()
    if shutil.which("linux.uml") is None:
        pytest.skip("needs linux.uml (apt-get install user-mode-linux)")


SMALL = ("--sizes", "20,60", "--changes", "2", "--background", "10", "--replacements", "3")


def test_small_bench_in_uml_compares_both_modes(tmp_path: Path) -> None:
    needs_uml()
    run = tmp_path / "run"
    done = bench(run, "--node", "uml", *SMALL, "--connections", "400")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "this takes roughly" in done.stderr  # says up front how long
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["node"] == "uml" and meta["kernel"].startswith("6.") and meta["syscall_us"] > 0
    for key in ("syscall_us", "iptables", "has_ipvs", "start_s"):
        assert key in meta["node_info"]
    assert {"pandas", "locust", "kpbench"} <= set(meta["packages"])
    assert meta["seed"] == 1 and meta["git_commit"] and "bench" in meta["command"]
    for name in ("syncs.csv", "traffic.csv", "fairness.csv", "report.md", "requests.csv.gz"):
        assert (run / name).stat().st_size > 0, name
    for png in ("sync_time_vs_size.png", "distribution.png", "churn_cpu.png"):
        assert (run / png).read_bytes().startswith(b"\x89PNG"), png

    syncs = pd.read_csv(run / "syncs.csv")
    sweep = syncs[syncs["scenario"] == "endpoint-change"]
    assert set(sweep["mode"]) == {"iptables-full", "iptables-partial", "ipvs"}
    assert set(sweep["services"]) == {20, 60}
    assert set(syncs[syncs["scenario"] == "churn"]["mode"]) == {"iptables-partial", "ipvs"}

    traffic = pd.read_csv(run / "traffic.csv")
    assert set(traffic["mode"]) == {"iptables", "ipvs"}
    assert set(traffic["scenario"]) == {"churn", "steady", "keepalive"}
    # Pods replaced in the Kubernetes order: no connection refused or reset. A single-CPU UML
    # guest can stall for seconds under a long kernel operation, which times out the requests
    # of every service at once (the report counts those moments); they stay rare.
    assert traffic["refused"].sum() == traffic["reset"].sum() == 0, traffic.to_string()
    assert traffic["timeout"].sum() <= 0.01 * traffic["requests"].sum(), traffic.to_string()
    fairness = pd.read_csv(run / "fairness.csv")
    ipvs = fairness[(fairness["mode"] == "ipvs") & (fairness["scenario"] == "steady")]
    # Round robin from one client: 400 connections over 8 pods is exactly 50 each.
    assert sorted(set(ipvs["connections"])) == [50]
    assert ipvs.groupby("service")["backend"].nunique().tolist() == [8, 8, 8]

    text = (run / "report.md").read_text()
    checks = [line for line in text.splitlines() if line.startswith("| ") and line.endswith("|")]
    ipvs_check = next(line for line in checks if line.startswith("| ipvs round robin, one client"))
    assert ipvs_check.rstrip(" |").endswith("pass"), ipvs_check
    locust_check = next(line for line in checks if line.startswith("| locust's statistics agree"))
    assert locust_check.rstrip(" |").endswith("pass"), locust_check
    # The report is rebuilt from the raw files alone, identically.
    (run / "report.md").unlink()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (run / "report.md").read_text() == text
    compared = subprocess.run(
        [sys.executable, "-m", "harness", "compare", str(run), str(run)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert compared.returncode == 0 and "wall B/A" in compared.stdout


def test_same_seed_same_event_logs_and_rule_sets(tmp_path: Path) -> None:
    needs_root()
    options = (
        "--node",
        "netns",
        "--modes",
        "iptables",
        *SMALL,
        "--connections",
        "100",
        "--seed",
        "9",
    )
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        done = bench(run, *options)
        assert done.returncode == 0, done.stderr[-3000:]
    metas = [json.loads((run / "meta.json").read_text()) for run in runs]
    assert metas[0]["event_logs"] == metas[1]["event_logs"]
    assert set(metas[0]["event_logs"]) == {
        "sweep-20.jsonl",
        "sweep-60.jsonl",
        "churn-iptables.jsonl",
    }
    columns = ["mode", "scenario", "services", "sync", "rules", "bytes", "ops"]
    sweeps = [pd.read_csv(run / "syncs.csv") for run in runs]
    sweeps = [
        s[~s["scenario"].str.startswith("churn") & (s["scenario"] != "steady")][columns]
        for s in sweeps
    ]
    pd.testing.assert_frame_equal(
        sweeps[0].reset_index(drop=True), sweeps[1].reset_index(drop=True)
    )
    other = bench(tmp_path / "c", *options[:-1], "10")
    assert other.returncode == 0, other.stderr[-3000:]
    assert (
        json.loads((tmp_path / "c" / "meta.json").read_text())["event_logs"]
        != metas[0]["event_logs"]
    )


def test_ctrl_c_keeps_what_was_measured_and_leaves_nothing(tmp_path: Path) -> None:
    needs_root()
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "bench", "--out", str(run), "--node", "netns",
         "--modes", "iptables", "--sizes", "20", "--changes", "1", "--replacements", "200",
         "--background", "10", "--connections", "100"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        # As from a terminal, even when these tests run from a background job (where SIGINT
        # is inherited as ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait until the churn is under way
        seen.append(line)
        if "churn 2/200" in line or time.monotonic() > deadline:
            break
    # What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["ended"]
    syncs = pd.read_csv(run / "syncs.csv")
    assert (syncs["scenario"] == "endpoint-change").any()  # the sweep's rows were kept
    assert "This run is interrupted" in (run / "report.md").read_text()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "interrupted"
    assert not [ns for ns in existing() if ns.startswith("kpbench-node")]
    leftovers = subprocess.run(
        ["pgrep", "-f", "kpbench-netns-"], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""
