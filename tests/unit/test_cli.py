"""The command line as a user meets it: exit codes and FILE:LINE messages, never a traceback."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.cli import ROOT, reconciler
from tests.helpers import eps, svc

SEED = "tests/data/seed.jsonl"


def write(path: Path, *lines: bytes) -> str:
    path.write_bytes(b"".join(lines))
    return str(path)


def test_render_prints_the_restore_input() -> None:
    out = reconciler(
        "render", "--log", SEED, "--mode", "iptables", "--cluster-cidr", "10.244.0.0/16"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == (ROOT / "tests/data/seed.iptables-restore").read_text()


def test_bad_line_exits_2_with_file_and_line(tmp_path: Path) -> None:
    log = write(
        tmp_path / "bad.jsonl",
        orjson.dumps(svc("a", "10.96.0.1")) + b"\n",
        b"\n",
        orjson.dumps(eps("a", ["10.1.0.1"], event="EXPLODED")) + b"\n",
    )
    out = reconciler("render", "--log", log, "--mode", "iptables")
    assert out.returncode == 2
    assert out.stdout == ""
    assert (
        out.stderr.strip()
        == f"{log}:3: unknown event type 'EXPLODED' (expected ADDED, MODIFIED, DELETED or BOOKMARK)"
    )
    assert "Traceback" not in out.stderr


def test_skip_invalid_reports_each_line_and_goes_on(tmp_path: Path) -> None:
    log = write(
        tmp_path / "mixed.jsonl",
        b"garbage\n",
        orjson.dumps(svc("a", "10.96.0.1")) + b"\n",
        orjson.dumps(eps("a", ["10.1.0.999"])) + b"\n",
        orjson.dumps(eps("a", ["10.1.0.1"])) + b"\n",
    )
    out = reconciler("render", "--log", log, "--skip-invalid")
    assert out.returncode == 0
    assert out.stderr.splitlines()[0].startswith(f"{log}:1: not valid JSON")
    assert (
        out.stderr.splitlines()[1]
        == f"{log}:3: invalid IP address '10.1.0.999' in EndpointSlice ns1/a-abc endpoints"
    )
    assert "--to-destination 10.1.0.1:80" in out.stdout


def test_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    out = reconciler("render", "--log", str(tmp_path / "nope.jsonl"))
    assert out.returncode != 0
    assert "nope.jsonl: cannot read the event log: No such file or directory" in out.stderr
    assert "Traceback" not in out.stderr


def test_render_ipvs_prints_the_three_saved_forms() -> None:
    out = reconciler(
        "render",
        "--log",
        SEED,
        "--mode",
        "ipvs",
        "--cluster-cidr",
        "10.244.0.0/16",
        "--hostname-override",
        "minikube",
    )
    assert out.returncode == 0, out.stderr
    ipvsadm, ipset, iptables = (
        out.stdout.split("# ipvsadm -S -n\n")[1].split("# ipset save\n")[0],
        out.stdout.split("# ipset save\n")[1].split("# iptables-restore\n")[0],
        out.stdout.split("# iptables-restore\n")[1],
    )
    assert (
        "-A -t 10.101.57.97:80 -s rr\n-a -t 10.101.57.97:80 -r 10.244.0.27:80 -m -w 1\n" in ipvsadm
    )
    assert "add KUBE-LOOP-BACK 10.244.0.27,tcp:80,10.244.0.27\n" in ipset
    assert "add KUBE-CLUSTER-IP 10.101.57.97,tcp:80\n" in ipset
    assert "--match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE" in iptables


def test_unknown_ipvs_scheduler_is_refused() -> None:
    out = reconciler("render", "--log", SEED, "--mode", "ipvs", "--ipvs-scheduler", "fastest")
    assert out.returncode == 2
    assert "unknown --ipvs-scheduler 'fastest'" in out.stderr


def test_run_needs_once_or_follow() -> None:
    out = reconciler("run", "--log", SEED)
    assert out.returncode == 2
    assert "one of the arguments --once --follow is required" in out.stderr
