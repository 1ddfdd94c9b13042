"""`python -m harness compare results/A results/B`: B's figures as ratios of A's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from harness.report import load_run, programming_latency, sweep_rows


def sync_ratios(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Median wall and CPU per mode x scenario x size in both runs, and B / A."""
    keys = ["mode", "scenario", "services"]
    med_a = sweep_rows(a).groupby(keys)[["wall_s", "cpu_s"]].median()
    med_b = sweep_rows(b).groupby(keys)[["wall_s", "cpu_s"]].median()
    both = pd.merge(med_a, med_b, left_index=True, right_index=True, suffixes=(" A", " B"))
    both["wall B/A"] = both["wall_s B"] / both["wall_s A"]
    both["cpu B/A"] = both["cpu_s B"] / both["cpu_s A"]
    return both.reset_index()


def side_by_side(
    a: pd.DataFrame, b: pd.DataFrame, keys: list[str], values: list[str]
) -> pd.DataFrame:
    if a.empty or b.empty:
        return pd.DataFrame()
    both = pd.merge(
        a.set_index(keys)[values],
        b.set_index(keys)[values],
        left_index=True,
        right_index=True,
        suffixes=(" A", " B"),
    )
    for v in values:
        both[f"{v} B/A"] = both[f"{v} B"] / both[f"{v} A"]
    return both.reset_index()


def compare(run_a: Path, run_b: Path) -> str:
    a, b = load_run(run_a), load_run(run_b)
    parts = [f"# {run_b} / {run_a}", ""]
    sections = [
        ("Sync cost (medians)", sync_ratios(a["syncs"], b["syncs"])),
        (
            "Programming latency during churn",
            side_by_side(
                programming_latency(a["latency"]), programming_latency(b["latency"]), ["mode"], ["p50 s", "p99 s"]
            ),
        ),
        (
            "Fairness",
            side_by_side(
                a["fair_summary"],
                b["fair_summary"],
                ["mode", "scenario", "service", "counted"],
                ["jain", "max/min"],
            ),
        ),
        (
            "Requests and failures",
            side_by_side(
                a["traffic"], b["traffic"],
                ["mode", "scenario", "service"], ["requests", "failed"],
            ),
        ),
    ]  # fmt: skip
    for title, table in sections:
        parts += [f"## {title}", ""]
        parts.append(
            str(table.to_markdown(index=False, floatfmt=".4g"))
            if not table.empty
            else "_no data in both runs_"
        )
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness compare", description=__doc__)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)
    for run in (args.run_a, args.run_b):
        if not (run / "meta.json").exists():
            print(f"error: {run}: not a kpbench run folder (no meta.json)", file=sys.stderr)
            return 2
    print(compare(args.run_a, args.run_b))
    return 0
