"""The bench's pure parts: churn plans, derived tables, self-checks, report, compare, options."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness import bench, compare, report
from harness.churn import churn_plan, write_background
from harness.httpwire import BadResponse, failure_kind, read_response
from harness.results import fairness_table, traffic_table
from tests.cli import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- churn plans -------------------------------------------------------------------------


def test_churn_plan_is_a_function_of_its_seed() -> None:
    assert churn_plan(7, 3, 8, 30) == churn_plan(7, 3, 8, 30)
    assert churn_plan(7, 3, 8, 30) != churn_plan(8, 3, 8, 30)


def test_churn_plan_replaces_the_oldest_alive_pod_of_a_service() -> None:
    services, pods = 3, 4
    alive = {s: list(range(s * pods, (s + 1) * pods)) for s in range(services)}
    seen = set(range(services * pods))
    for step in churn_plan(1, services, pods, 40):
        assert step.old_pod == alive[step.service][0]  # rolling update: oldest first
        assert step.new_pod not in seen  # pod numbers are never reused
        seen.add(step.new_pod)
        alive[step.service] = [*alive[step.service][1:], step.new_pod]
    assert all(len(v) == pods for v in alive.values())


def test_background_log_is_the_same_bytes_for_the_same_seed(tmp_path: Path) -> None:
    write_background(tmp_path / "a", 50, 3)
    write_background(tmp_path / "b", 50, 3)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes().count(b"\n") == 100


# --- load generator's protocol handling ------------------------------------------------------


class FakeSocket:
    """Hands out canned bytes in small pieces, as a real socket may."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self.data, self.piece = data, piece

    def recv(self, n: int) -> bytes:
        out, self.data = self.data[: min(n, self.piece)], self.data[min(n, self.piece) :]
        return out


def reply(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_read_response_splits_pipelined_keepalive_replies() -> None:
    sock = FakeSocket(reply(b"web-0-1") + reply(b"web-0-22"))
    buffer = bytearray()
    assert read_response(sock, buffer) == "web-0-1"  # type: ignore[arg-type]
    assert read_response(sock, buffer) == "web-0-22"  # type: ignore[arg-type]


def test_read_response_rejects_other_replies_and_early_close() -> None:
    with pytest.raises(BadResponse):
        read_response(FakeSocket(b"HTTP/1.1 503 No\r\n\r\n"), bytearray())  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        read_response(FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"), bytearray())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(), "refused"),
        (ConnectionResetError(), "reset"),
        (BrokenPipeError(), "reset"),
        (TimeoutError(), "timeout"),
        (BadResponse("x"), "bad-response"),
        (OSError("no route"), "other"),
    ],
)
def test_failure_kinds(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind


# --- derived tables ---------------------------------------------------------------------------


def requests_frame(rows: list[tuple[str, str, str, int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["mode", "scenario", "service", "connection", "backend", "outcome"]
    )


def test_traffic_and_fairness_tables_count_connections_and_requests() -> None:
    rows = [
        ("ipvs", "keepalive", "web-0", 1, "a", "ok"),
        ("ipvs", "keepalive", "web-0", 1, "a", "ok"),
        ("ipvs", "keepalive", "web-0", 2, "b", "ok"),
        ("ipvs", "keepalive", "web-0", 3, "", "refused"),
        ("ipvs", "keepalive", "web-0", 4, "", "timeout"),
    ]
    traffic = traffic_table(requests_frame(rows)).iloc[0]
    assert (traffic["requests"], traffic["connections"], traffic["failed"]) == (5, 4, 2)
    assert (traffic["refused"], traffic["timeout"], traffic["reset"]) == (1, 1, 0)
    assert traffic["failed_pct"] == 40.0
    fair = fairness_table(requests_frame(rows)).set_index("backend")
    assert fair.loc["a", "connections"] == 1 and fair.loc["a", "requests"] == 2
    assert fair.loc["b", "connections"] == 1 and fair.loc["b", "requests"] == 1


# --- a synthetic run folder --------------------------------------------------------------------


def sweep_rows() -> list[dict[str, Any]]:
    rows = []
    for services in (100, 1000):
        for mode, wall, cpu, sync in (
            ("iptables-full", 0.002 * services, 0.002 * services, "full"),
            ("iptables-partial", 0.001 * services, 0.001 * services, "partial"),
            ("ipvs", 0.0005, 0.0, "incremental"),
        ):
            for scenario in ("initial", "endpoint-change", "endpoint-change", "service-add"):
                rows.append(
                    {
                        "mode": mode, "scenario": scenario, "services": services,
                        "endpoints_per_service": 10, "sync": "full" if scenario == "initial" else sync,
                        "wall_s": wall, "cpu_s": cpu, "rules": 12 if mode == "ipvs" else 40 * services,
                        "bytes": 0 if mode == "ipvs" else 150 * services, "ops": 2 if mode == "ipvs" else 0,
                        "t": None, "latency_s": None,
                    }
                )  # fmt: skip
    return rows


def make_run(
    path: Path,
    ipvs_counts: list[int],
    iptables_counts: list[int],
    churn_failed: int = 0,
    scale: float = 1.0,
) -> Path:
    """A run folder with the raw files the bench writes, from chosen per-backend counts."""
    path.mkdir(parents=True)
    (path / "meta.json").write_text(
        json.dumps(
            {
                "run_id": path.name,
                "status": "complete",
                "node": "uml",
                "node_info": {"kind": "uml", "kernel": "6.1"},
            }
        )
    )
    syncs = pd.DataFrame(sweep_rows())
    syncs["wall_s"] *= scale
    syncs["cpu_s"] *= scale
    churn_syncs = pd.DataFrame(
        [
            {"mode": m, "scenario": "churn", "services": 103, "endpoints_per_service": 8, "sync": "partial",
             "wall_s": 0.1, "cpu_s": c, "rules": 5, "bytes": 10, "ops": 0, "t": float(t), "latency_s": 0.5}
            for m, c in (("iptables-partial", 0.2), ("ipvs", 0.01)) for t in range(5)
        ]
    )  # fmt: skip
    pd.concat([syncs, churn_syncs]).to_csv(path / "syncs.csv", index=False)
    rows = []
    conn = 0
    for mode, counts in (("ipvs", ipvs_counts), ("iptables", iptables_counts)):
        for b, count in enumerate(counts):
            for _ in range(count):
                conn += 1
                rows.append((mode, "steady", "web-0", conn, f"web-0-{b}", "ok"))
        for k in range(1000):
            conn += 1
            failed = k < churn_failed
            rows.append(
                (
                    mode,
                    "churn",
                    "web-0",
                    conn,
                    "" if failed else "web-0-1",
                    "reset" if failed else "ok",
                )
            )
    frame = requests_frame(rows)
    frame.insert(0, "t", 0.0)
    frame.to_csv(path / "requests.csv.gz", index=False)
    pd.DataFrame(
        [
            {"mode": m, "line": i, "phase": "churn", "latency_s": 0.1 * i * scale}
            for m in ("iptables", "ipvs")
            for i in range(1, 11)
        ]
    ).to_csv(path / "latency.csv", index=False)
    pd.DataFrame(
        [{"mode": "iptables", "replacements": 10, "window_s": 20.0, "reconciler_cpu_s": 4.0, "cpu_per_wall_s": 0.2},
         {"mode": "ipvs", "replacements": 10, "window_s": 10.0, "reconciler_cpu_s": 0.5, "cpu_per_wall_s": 0.05}]
    ).to_csv(path / "cpu.csv", index=False)  # fmt: skip
    return path


def uniform_random(n: int, k: int, seed: int = 5) -> list[int]:
    rng = random.Random(seed)
    counts = [0] * k
    for _ in range(n):
        counts[rng.randrange(k)] += 1
    return counts


def results_of(run: Path) -> dict[str, bool | None]:
    data = report.load_run(run)
    return {c.name: c.ok for c in report.checks(data["syncs"], data["fair_summary"], data["fails"])}


def test_checks_pass_on_expected_behaviour(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [250] * 8, uniform_random(2000, 8))
    results = results_of(run)
    assert results == {
        "ipvs round robin, one client": True,
        "iptables random choice": True,
        "no loss during ordered churn (ipvs)": True,
        "no loss during ordered churn (iptables)": True,
        "one endpoint change at 1,000 services": True,
    }


def test_the_modes_must_replay_the_same_churn_log() -> None:
    same = {
        "churn-iptables.jsonl": "ab" * 32,
        "churn-ipvs.jsonl": "ab" * 32,
        "sweep-20.jsonl": "cd" * 32,
    }
    empty = pd.DataFrame()

    def verdict(logs: dict[str, str]) -> bool | None:
        checks = report.checks(empty, empty, empty, None, logs)
        return next(
            c.ok for c in checks if c.name == "every mode replayed the same churn event log"
        )

    assert verdict(same) is True
    assert verdict({**same, "churn-ipvs.jsonl": "ef" * 32}) is False


def test_checks_fail_when_a_measurement_contradicts_them(tmp_path: Path) -> None:
    skewed = [400, *([228] * 7)]  # not round robin
    lopsided = [600, *([200] * 7)]  # Jain 0.96: not uniform random
    run = make_run(tmp_path / "run", skewed, lopsided, churn_failed=2)  # 0.2% lost
    results = results_of(run)
    assert results["ipvs round robin, one client"] is False
    assert results["iptables random choice"] is False
    assert results["no loss during ordered churn (ipvs)"] is False


def test_report_is_rebuilt_identically_with_tables_and_plots(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [250] * 8, uniform_random(2000, 8))
    first = report.build(run).read_text()
    assert report.build(run).read_text() == first
    for section in ("## Harness self-checks", "Claim 1", "Claim 2", "## Sync cost vs cluster size",
                    "## CPU under churn", "## Network programming latency", "## Fairness",
                    "## Failed requests", "## Against published figures"):  # fmt: skip
        assert section in first
    for png in ("sync_time_vs_size.png", "distribution.png", "churn_cpu.png"):
        assert (run / png).read_bytes().startswith(PNG_MAGIC)
        assert f"]({png})" in first
    fairness = pd.read_csv(run / "fairness.csv")
    steady = fairness[(fairness["mode"] == "ipvs") & (fairness["scenario"] == "steady")]
    assert list(steady["connections"]) == [250] * 8


def test_claim_verdicts_follow_the_numbers(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [250] * 8, uniform_random(2000, 8))
    text = report.build(run).read_text()
    # iptables-partial costs 50% of a full sync's CPU in this run: the claim holds for CPU.
    assert "costs 50% of a full sync's CPU" in text
    assert "the claim holds for the CPU" in text


def test_compare_prints_ratios_of_two_runs(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", [250] * 8, uniform_random(2000, 8))
    b = make_run(tmp_path / "b", [250] * 8, uniform_random(2000, 8), scale=2.0)
    table = compare.sync_ratios(report.load_run(a)["syncs"], report.load_run(b)["syncs"])
    ipt = table[table["mode"] == "iptables-full"]
    assert list(ipt["wall B/A"].round(6).unique()) == [2.0]
    assert "## Sync cost (medians)" in compare.compare(a, b)


# --- options -----------------------------------------------------------------------------------


def test_quick_preset_and_overrides() -> None:
    _, plan = bench.parse_args(["--quick", "--modes", "ipvs", "--sizes", "10,20", "--seed", "4"])
    assert plan.sizes == (10, 20) and plan.modes == ("ipvs",) and plan.seed == 4
    assert plan.strategies == ("ipvs",)
    assert plan.connections >= 2000  # issue 5: >= 2,000 per service in --quick
    _, full = bench.parse_args([])
    assert full.sizes == (100, 1000, 5000, 10000) and full.connections >= 10000


@pytest.mark.parametrize(
    "argv", [["--modes", "nftables"], ["--sizes", "1,x"], ["--connections", "0"]]
)
def test_bad_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_an_existing_run_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "meta.json").write_text("{}")
    assert bench.main(["--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "meta.json").read_text() == "{}"


def test_estimates_say_quick_fits_ten_minutes_and_full_an_hour() -> None:
    assert bench.estimate_s(bench.QUICK, "uml") <= 600
    assert bench.estimate_s(bench.FULL, "uml") <= 3600


def test_an_interrupted_run_still_gets_a_report(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [250] * 8, uniform_random(2000, 8))
    requests = pd.read_csv(run / "requests.csv.gz")
    requests[requests["scenario"] == "churn"].to_csv(run / "requests.csv.gz", index=False)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    text = report.build(run).read_text()
    assert "This run is interrupted" in text
    assert not (run / "distribution.png").exists()  # no steady-state counts to draw
    assert re.search(r"\| ipvs round robin, one client\s*\|[^\n]*not measured[^\n]*\| n/a", text)


def test_the_harness_modules_do_not_pull_in_locust() -> None:
    """locust monkey-patches the standard library with gevent on import; only the load
    generator's own process may import it (it broke subprocess waits in pytest once)."""
    code = (
        "import sys, harness.bench, harness.churn, harness.report, harness.compare,"
        " harness.httpwire, harness.traffic, harness.gate;"
        " assert 'locust' not in sys.modules and 'gevent' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
