"""Per-sync measurements, named after kube-proxy's metrics, appended as JSON Lines."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import orjson


@dataclass(frozen=True)
class SyncMetrics:
    """One sync. wall_s is sync_proxy_rules_duration_seconds; latency_s is
    network_programming_duration_seconds measured from the newest event's arrival."""

    mode: str
    sync: str  # "full", or "partial" (iptables) / "incremental" (ipvs)
    wall_s: float
    cpu_s: float  # user+sys of the reconciler and its children (iptables-restore, ...)
    services: int
    endpoints: int
    rules: int  # rules written to the kernel by this sync
    rules_total: int  # rules the kernel holds for us after it
    bytes: int  # bytes fed to iptables-restore
    deleted_chains: int
    changed_services: int
    latency_s: float | None
    timestamp: float
    # Log lines folded before this sync: a writer waits for log_lines >= its line to know
    # that its event is in the kernel.
    log_lines: int = 0
    ops: int = 0  # netlink operations (IPVS) plus ipset and address changes


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class MetricsWriter:
    """Appends one JSON object per sync; flushes each so a reader can tail it."""

    def __init__(self, path: Path | None) -> None:
        self._fh: IO[bytes] | None = path.open("ab") if path else None

    def write(self, metrics: SyncMetrics) -> None:
        if self._fh is None:
            return
        self._fh.write(orjson.dumps(asdict(metrics)) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
