"""A run's files in results/<run-id>/: gathering the node's raw output, and the derived tables.

Raw (written once, by the bench): meta.json, syncs.csv, requests.csv.gz, churn.csv,
latency.csv, cpu.csv, locust/<mode>-<scenario>.json. Derived (rebuilt by
`python -m harness report`): traffic.csv and fairness.csv. The derivations are pure
functions of DataFrames, so the report is the same whenever it is rebuilt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from harness.sweep import COLUMNS as SYNC_COLUMNS

SCENARIOS = ("churn", "steady", "keepalive")
# The churn runs use the modern kube-proxy behaviour of each mode.
CHURN_STRATEGY = {"iptables": "iptables-partial", "ipvs": "ipvs"}
FAILURE_KINDS = ("refused", "reset", "timeout", "bad-response", "other")


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()


def churn_syncs(mode: str, raw: Path, services: int, pods: int) -> pd.DataFrame:
    """The reconciler's syncs during a churn run, as syncs.csv rows (scenario `churn` inside
    the churn window, `churn-setup` before it, `steady` after), with `t` from its start."""
    metrics = raw / "metrics.jsonl"
    result = json.loads((raw / "result.json").read_text()) if (raw / "result.json").exists() else {}
    records = (
        [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
        if metrics.exists()
        else []
    )
    if not records:
        return pd.DataFrame(columns=[*SYNC_COLUMNS, "t", "latency_s"])
    df = pd.DataFrame.from_records(records)
    window = result.get("churn", {})
    start = window.get("window_start", float("inf"))
    end = window.get("window_end", float("inf"))
    scenario = pd.Series("churn", index=df.index)
    scenario[df["timestamp"] < start] = "churn-setup"
    scenario[df["timestamp"] > end] = "steady"
    return pd.DataFrame(
        {
            "mode": CHURN_STRATEGY[mode],
            "scenario": scenario,
            "services": df["services"],
            "endpoints_per_service": pods,
            "sync": df["sync"],
            "wall_s": df["wall_s"].round(6),
            "cpu_s": df["cpu_s"].round(4),
            "rules": df["rules"],
            "bytes": df["bytes"],
            "ops": df["ops"],
            "t": (
                df["timestamp"] - (start if start != float("inf") else df["timestamp"].min())
            ).round(4),
            "latency_s": df["latency_s"],
        }
    )


def gather_mode(mode: str, raw: Path, out: Path, services: int, pods: int) -> None:
    """Fold one mode's churn folder (from the node) into the run's raw files, appending."""
    _append_csv(out / "syncs.csv", churn_syncs(mode, raw, services, pods))
    frames = []
    for scenario in SCENARIOS:
        requests = read_csv(raw / scenario / "requests.csv")
        if not requests.empty:
            requests.insert(0, "scenario", scenario)
            requests.insert(0, "mode", mode)
            frames.append(requests)
        locust_json = raw / scenario / "locust.json"
        if locust_json.exists():
            (out / "locust").mkdir(exist_ok=True)
            shutil.copyfile(locust_json, out / "locust" / f"{mode}-{scenario}.json")
    if frames:
        _append_csv(out / "requests.csv.gz", pd.concat(frames, ignore_index=True))
    for name in ("churn.csv", "latency.csv"):
        table = read_csv(raw / name)
        if not table.empty:
            table.insert(0, "mode", mode)
            _append_csv(out / name, table)
    result_path = raw / "result.json"
    if result_path.exists():
        churn = json.loads(result_path.read_text()).get("churn", {})
        row = {
            "mode": mode,
            "replacements": churn.get("replacements"),
            "window_s": churn.get("window_s"),
            "reconciler_cpu_s": churn.get("reconciler_cpu_s"),
            "cpu_per_wall_s": churn.get("cpu_per_wall_s"),
        }
        _append_csv(out / "cpu.csv", pd.DataFrame([row]))


def _append_csv(path: Path, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    if path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    frame.to_csv(path, index=False)


def traffic_table(requests: pd.DataFrame) -> pd.DataFrame:
    """Per mode x scenario x service: requests, connections, failed and each failure kind."""
    if requests.empty:
        return pd.DataFrame()
    keys = ["mode", "scenario", "service"]
    grouped = requests.groupby(keys, sort=True)
    table = grouped.agg(
        requests=("outcome", "size"),
        connections=("connection", "nunique"),
        failed=("outcome", lambda s: int((s != "ok").sum())),
    )
    for kind in FAILURE_KINDS:
        table[kind] = grouped["outcome"].agg(lambda s, k=kind: int((s == k).sum()))
    table["failed_pct"] = (100 * table["failed"] / table["requests"]).round(4)
    return table.reset_index()


def fairness_table(requests: pd.DataFrame) -> pd.DataFrame:
    """Per mode x scenario x service x backend: connections and requests answered."""
    ok = requests[requests["outcome"] == "ok"] if not requests.empty else requests
    if ok.empty:
        return pd.DataFrame()
    grouped = ok.groupby(["mode", "scenario", "service", "backend"], sort=True)
    table = grouped.agg(
        connections=("connection", "nunique"),
        requests=("outcome", "size"),
    )
    return table.reset_index()


def locust_counts(run: Path) -> pd.DataFrame:
    """locust's own statistics (its JSON output, one file per mode and scenario): requests and
    failures per service, to check the per-request records against."""
    rows = []
    for path in sorted((run / "locust").glob("*.json")):
        mode, _, scenario = path.stem.partition("-")
        for entry in json.loads(path.read_text()):
            rows.append(
                {
                    "mode": mode,
                    "scenario": scenario,
                    "service": entry["name"],
                    "locust_requests": entry["num_requests"],
                    "locust_failures": entry["num_failures"],
                }
            )
    return pd.DataFrame(rows)


def load(run: Path) -> dict[str, Any]:
    """Everything the report needs from a run folder."""
    requests = read_csv(run / "requests.csv.gz")
    if not requests.empty:
        requests["backend"] = requests["backend"].fillna("")
    meta_path = run / "meta.json"
    return {
        "meta": json.loads(meta_path.read_text()) if meta_path.exists() else {},
        "syncs": read_csv(run / "syncs.csv"),
        "requests": requests,
        "churn": read_csv(run / "churn.csv"),
        "latency": read_csv(run / "latency.csv"),
        "cpu": read_csv(run / "cpu.csv"),
        "locust": locust_counts(run),
    }
