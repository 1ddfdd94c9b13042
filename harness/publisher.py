"""Plays the EndpointSlice controller for the services in a node: appends Service and slice
events to the reconciler's log, and waits until the reconciler has applied them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from harness.eventlog import (
    EndpointSpec,
    PortSpec,
    encode,
    endpoint_slice_object,
    service_object,
    watch_event,
)


class NotProgrammed(TimeoutError):
    pass


@dataclass
class ServiceSlice:
    namespace: str
    name: str
    cluster_ip: str
    port: PortSpec
    # pod name -> (ip, ready, serving, terminating), in insertion order
    endpoints: dict[str, tuple[str, bool, bool, bool]] = field(default_factory=dict)


class EventPublisher:
    """Appends watch events; `wait_applied()` blocks until the reconciler's metrics say a sync
    covered the last line written (`log_lines` >= it)."""

    def __init__(self, log: Path, metrics: Path, node_name: str = "") -> None:
        self.log = log
        self.node_name = node_name or None
        self.metrics = metrics
        # Lines are numbered from the start of the log, as the reconciler counts them.
        self.lines = log.read_bytes().count(b"\n") if log.exists() else 0
        self._fh = log.open("ab")
        self._metrics_offset = 0
        self.applied_lines = 0
        self.latencies: list[float] = []  # the reconciler's own, from when it read the event
        # Network programming latency as a writer sees it: line -> seconds from the append to
        # the end of the sync that applied it (the metrics' wall-clock timestamp).
        self.programmed: dict[int, float] = {}
        self._appended: dict[int, float] = {}
        # Set by the owner: False once the reconciler has exited, so waiting stops early.
        self.alive: Callable[[], bool] = lambda: True

    def close(self) -> None:
        self._fh.close()

    def _append(self, event: dict[str, object]) -> int:
        self._fh.write(encode(event))
        self._fh.flush()
        self.lines += 1
        self._appended[self.lines] = time.time()
        return self.lines

    def add_service(self, svc: ServiceSlice) -> int:
        obj = service_object(svc.namespace, svc.name, svc.cluster_ip, [svc.port])
        return self._append(watch_event("ADDED", obj))

    def publish(self, svc: ServiceSlice, event_type: str = "MODIFIED") -> int:
        eps = [
            EndpointSpec(
                ip,
                ready=ready,
                serving=serving,
                terminating=terminating,
                pod_name=pod,
                node_name=self.node_name,
            )
            for pod, (ip, ready, serving, terminating) in svc.endpoints.items()
        ]
        obj = endpoint_slice_object(svc.namespace, svc.name, f"{svc.name}-kpb", eps, [svc.port])
        return self._append(watch_event(event_type, obj))

    def _read_metrics(self) -> None:
        if not self.metrics.exists():
            return
        with self.metrics.open("rb") as fh:
            fh.seek(self._metrics_offset)
            data = fh.read()
        cut = data.rfind(b"\n") + 1
        self._metrics_offset += cut
        for line in data[:cut].splitlines():
            record = orjson.loads(line)
            applied = record.get("log_lines", 0)
            for pending in [n for n in self._appended if n <= applied]:
                self.programmed[pending] = record["timestamp"] - self._appended.pop(pending)
            self.applied_lines = max(self.applied_lines, applied)
            if record.get("latency_s") is not None:
                self.latencies.append(record["latency_s"])

    async def wait_applied(self, line: int | None = None, timeout: float = 60.0) -> None:
        target = self.lines if line is None else line
        deadline = time.monotonic() + timeout
        while True:
            self._read_metrics()
            if self.applied_lines >= target:
                return
            if not self.alive():
                raise NotProgrammed(f"the reconciler exited before applying log line {target}")
            if time.monotonic() > deadline:
                raise NotProgrammed(f"log line {target} not applied after {timeout} s")
            await asyncio.sleep(0.01)
