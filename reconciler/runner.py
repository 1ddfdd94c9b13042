"""Drive a proxier from the log: one sync of the whole log, or follow it with batched syncs.

The batching follows kube-proxy's BoundedFrequencyRunner: a sync runs when changes are
pending and at least min_sync_period has passed since the previous sync started; a full
sync runs every sync_period and right after a failed apply.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from reconciler.errors import ApplyError
from reconciler.logreader import LogReader
from reconciler.metrics import MetricsWriter, SyncMetrics
from reconciler.state import ClusterState

POLL_INTERVAL_S = 0.005  # how often the tail looks for new lines


@dataclass(frozen=True)
class RunnerConfig:
    min_sync_period_s: float = 1.0
    sync_period_s: float = 30.0


class SyncResult(Protocol):
    @property
    def metrics(self) -> SyncMetrics: ...


class Proxier(Protocol):
    need_full: bool

    def sync(
        self, *, full: bool = False, newest_event: float | None = None
    ) -> SyncResult | None: ...


def run_once(
    reader: LogReader, state: ClusterState, proxier: Proxier, metrics: MetricsWriter
) -> None:
    """Fold the whole log (every line validated first), then one full sync."""
    events = reader.read_available(at_eof=True)
    arrived = time.monotonic()
    state.apply_all(events)
    outcome = proxier.sync(full=True, newest_event=arrived if events else None)
    if outcome is not None:
        metrics.write(outcome.metrics)


class StopFlag:
    """Set by SIGINT/SIGTERM (or a test) to end `follow` after the current step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def follow(
    reader: LogReader,
    state: ClusterState,
    proxier: Proxier,
    metrics: MetricsWriter,
    config: RunnerConfig,
    stop: StopFlag,
    *,
    clock: Callable[[], float] = time.monotonic,
    warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> None:
    """Tail the log until `stop` is set. A bad line raises LogLineError (nothing applied)."""
    last_sync_start = -float("inf")
    last_full = -float("inf")
    newest_event: float | None = None
    while not stop.is_set():
        events = reader.read_available()
        now = clock()
        if events:
            state.apply_all(events)
            newest_event = now
        due_full = proxier.need_full or now - last_full >= config.sync_period_s
        if (state.pending or due_full) and now - last_sync_start >= config.min_sync_period_s:
            last_sync_start = now
            try:
                outcome = proxier.sync(full=due_full, newest_event=newest_event)
            except ApplyError as exc:
                warn(f"sync failed, the next one will be full: {exc}")
                continue
            if due_full:
                last_full = now
            newest_event = None
            if outcome is not None:
                metrics.write(outcome.metrics)
            continue
        stop.wait(POLL_INTERVAL_S)
