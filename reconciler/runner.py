"""Drive a proxier from the log: one sync of the whole log, or follow it with batched syncs.

The batching follows kube-proxy's BoundedFrequencyRunner: a sync runs when changes are
pending and at least min_sync_period has passed since the previous sync started; a full
sync runs every sync_period and right after a failed apply.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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

    @property
    def pending_work(self) -> bool:
        """Work of the proxier's own that wants a sync even without new events."""
        ...

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
        metrics.write(replace(outcome.metrics, log_lines=reader.line_number))


class StopFlag:
    """Set by SIGINT/SIGTERM (or another thread) to end `follow` after the current step.

    A plain attribute, not a threading.Event: a signal handler that calls Event.set() can
    deadlock when the signal lands while the main thread holds the Event's own lock inside
    Event.wait() (it hung `run --follow` on SIGTERM now and then).
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep (a signal's handler still runs at once); True if the flag is set."""
        if not self._set:
            time.sleep(seconds)
        return self._set

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self._set = True

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
    """Tail the log until `stop` is set. A bad line raises LogLineError (nothing applied).

    After a failed apply the next sync is full; it runs when new changes arrive (after
    min_sync_period) or, without any, after sync_period, as kube-proxy's runner retries.
    """
    last_sync_start = -float("inf")
    next_full = -float("inf")
    newest_event: float | None = None
    while not stop.is_set():
        events = reader.read_available()
        now = clock()
        if events:
            state.apply_all(events)
            newest_event = now
        periodic = now >= next_full
        wanted = (
            state.pending or proxier.pending_work
        ) and now - last_sync_start >= config.min_sync_period_s
        if not (wanted or periodic):
            stop.wait(POLL_INTERVAL_S)
            continue
        last_sync_start = now
        full = periodic or proxier.need_full
        try:
            outcome = proxier.sync(full=full, newest_event=newest_event)
        except ApplyError as exc:
            warn(
                f"sync failed; retrying with a full sync in {config.sync_period_s:g} s or on the next change: {exc}"
            )
            next_full = now + config.sync_period_s
            continue
        if full:
            next_full = now + config.sync_period_s
        newest_event = None
        if outcome is not None:
            metrics.write(replace(outcome.metrics, log_lines=reader.line_number))
