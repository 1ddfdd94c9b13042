"""Workloads shared by the benchmarks (tests/bench) and the regression gate (tests/gate)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from harness.eventlog import SyntheticCluster
from reconciler.events import decode_line
from reconciler.logreader import LogReader
from reconciler.state import ClusterState


def churn_events(
    cluster: SyntheticCluster, changes: int, seed: int = 7
) -> Iterator[dict[str, Any]]:
    """The cluster's initial events, then `changes` single-endpoint changes."""
    rng = random.Random(seed)
    yield from cluster.initial_events()
    first_new_pod = cluster.services * cluster.endpoints_per_service + 1
    for k in range(changes):
        yield cluster.replace_one_endpoint(rng.randrange(cluster.services), first_new_pod + k)


def replay(path: Path) -> tuple[ClusterState, int]:
    """Parse and fold a whole log, as `reconciler run` does at start."""
    reader = LogReader(path)
    events = reader.read_available(at_eof=True)
    reader.close()
    state = ClusterState()
    state.apply_all(events)
    return state, len(events)


def apply_event(state: ClusterState, event: dict[str, Any]) -> None:
    decoded = decode_line(orjson.dumps(event))
    assert decoded is not None
    state.apply(decoded)
