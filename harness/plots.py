"""PNG plots of a run: sync time vs cluster size, per-backend distribution, CPU during churn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine

import matplotlib.pyplot as plt
import pandas as pd

from harness.results import fairness_table

COLOURS = {
    "iptables-full": "tab:red",
    "iptables-partial": "tab:orange",
    "ipvs": "tab:blue",
    "iptables": "tab:orange",
}


def sync_time_vs_size(syncs: pd.DataFrame, path: Path) -> bool:
    rows = (
        syncs[syncs["scenario"].isin(("initial", "endpoint-change"))] if not syncs.empty else syncs
    )
    if rows.empty:
        return False
    medians = rows.groupby(["mode", "scenario", "services"])["wall_s"].median().reset_index()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (mode, scenario), group in medians.groupby(["mode", "scenario"]):
        ax.plot(
            group["services"],
            group["wall_s"],
            marker="o",
            linestyle="-" if scenario == "endpoint-change" else "--",
            color=COLOURS.get(str(mode), "grey"),
            label=f"{mode}, {scenario}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("services (10 endpoints each)")
    ax.set_ylabel("sync wall time, s (median)")
    ax.set_title("Sync time vs cluster size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def distribution(requests: pd.DataFrame, path: Path) -> bool:
    """Per-backend share relative to an even split, one panel per mode x scenario."""
    fair = fairness_table(requests)
    if fair.empty:
        return False
    panels = [
        (mode, scenario, unit)
        for mode in sorted(fair["mode"].unique())
        for scenario, unit in (("steady", "connections"), ("keepalive", "requests"))
        if not fair[(fair["mode"] == mode) & (fair["scenario"] == scenario)].empty
    ]
    if not panels:  # e.g. a run interrupted during the churn: no steady-state counts yet
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), squeeze=False)
    for ax, (mode, scenario, unit) in zip(axes[:, 0], panels, strict=True):
        sel = fair[(fair["mode"] == mode) & (fair["scenario"] == scenario)]
        x = 0
        for service, group in sel.groupby("service"):
            share = group[unit] / group[unit].mean()
            xs = range(x, x + len(share))
            ax.bar(list(xs), share, color=COLOURS.get(str(mode), "grey"), alpha=0.8)
            ax.text(x + len(share) / 2 - 0.5, 0.05, str(service), ha="center", fontsize=7)
            x += len(share) + 1
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"{unit} / mean")
        ax.set_title(f"{mode}, {scenario}: per-backend {unit}", fontsize=9)
        ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def churn_cpu(syncs: pd.DataFrame, path: Path) -> bool:
    """Cumulative reconciler CPU (sum of its syncs) vs time since the churn started."""
    rows = syncs[syncs["scenario"] == "churn"] if not syncs.empty else syncs
    if rows.empty or "t" not in rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, group in rows.groupby("mode"):
        group = group.sort_values("t")
        ax.step(
            group["t"],
            group["cpu_s"].cumsum(),
            where="post",
            color=COLOURS.get(str(mode), "grey"),
            label=str(mode),
        )
    ax.set_xlabel("seconds since the churn started")
    ax.set_ylabel("reconciler CPU, cumulative s")
    ax.set_title("CPU during churn (slope = CPU seconds per wall second)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw_all(run: Path, data: dict[str, Any]) -> list[str]:
    """Draws what the data allows; returns the file names written."""
    made = []
    for name, draw, frame in (
        ("sync_time_vs_size.png", sync_time_vs_size, data["syncs"]),
        ("distribution.png", distribution, data["requests"]),
        ("churn_cpu.png", churn_cpu, data["syncs"]),
    ):
        if draw(frame, run / name):
            made.append(name)
    return made
