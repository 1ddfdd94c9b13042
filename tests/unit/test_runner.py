"""Following a growing log: partial lines, batching, periodic and after-failure full syncs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from reconciler.errors import LogLineError
from reconciler.iptables.fake import FakeIptables
from reconciler.iptables.proxier import IptablesProxier
from reconciler.iptables.render import IptablesConfig
from reconciler.logreader import LogReader
from reconciler.metrics import MetricsWriter, SyncMetrics
from reconciler.runner import RunnerConfig, StopFlag, follow
from reconciler.state import ClusterState
from tests.helpers import eps, svc


class Recorder(MetricsWriter):
    def __init__(self) -> None:
        super().__init__(None)
        self.syncs: list[SyncMetrics] = []

    def write(self, metrics: SyncMetrics) -> None:
        self.syncs.append(metrics)


class Follower:
    """Runs `follow` in a thread over a log file the test appends to."""

    def __init__(self, path: Path, config: RunnerConfig) -> None:
        self.path = path
        self.fake = FakeIptables()
        self.state = ClusterState()
        self.proxier = IptablesProxier(self.state, self.fake, IptablesConfig())
        self.recorder = Recorder()
        self.stop = StopFlag()
        self.warnings: list[str] = []
        self.error: BaseException | None = None
        self.reader = LogReader(path)
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)

    def _run(self, config: RunnerConfig) -> None:
        try:
            follow(
                self.reader,
                self.state,
                self.proxier,
                self.recorder,
                config,
                self.stop,
                warn=self.warnings.append,
            )
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def append(self, data: bytes) -> None:
        with self.path.open("ab") as fh:
            fh.write(data)

    def wait_for(self, predicate: object, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.01)
        raise AssertionError("condition not reached")

    def nat_text(self) -> str:
        return "\n".join(r for rules in self.fake.tables["nat"].chains.values() for r in rules)


@pytest.fixture
def follower(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Follower]:
    config = getattr(request, "param", RunnerConfig(min_sync_period_s=0.05, sync_period_s=30))
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"")
    f = Follower(log, config)
    f.thread.start()
    yield f
    f.stop.set()
    f.thread.join(5)
    f.reader.close()


def line(event: dict[str, object]) -> bytes:
    return orjson.dumps(event) + b"\n"


def test_partial_last_line_is_waited_for(follower: Follower) -> None:
    follower.wait_for(lambda: len(follower.recorder.syncs) == 1)  # the initial full sync
    data = line(svc("a", "172.30.0.1")) + line(eps("a", ["10.1.0.1"]))
    follower.append(data[:-25])
    time.sleep(0.3)
    assert follower.error is None
    assert "10.1.0.1" not in follower.nat_text()
    follower.append(data[-25:])
    follower.wait_for(lambda: "10.1.0.1:80" in follower.nat_text())
    assert follower.recorder.syncs[-1].sync == "partial"
    assert follower.recorder.syncs[-1].latency_s is not None
    assert follower.recorder.syncs[-1].log_lines == 2


@pytest.mark.parametrize(
    "follower", [RunnerConfig(min_sync_period_s=0.6, sync_period_s=30)], indirect=True
)
def test_events_are_batched_for_min_sync_period(follower: Follower) -> None:
    follower.wait_for(lambda: len(follower.recorder.syncs) == 1)
    follower.append(b"".join(line(svc(f"s{i}", f"172.30.0.{i}")) for i in range(1, 6)))
    follower.wait_for(lambda: len(follower.recorder.syncs) >= 2)
    time.sleep(0.8)
    kinds = [(m.sync, m.changed_services) for m in follower.recorder.syncs]
    assert kinds == [("full", 0), ("partial", 5)]


@pytest.mark.parametrize(
    "follower", [RunnerConfig(min_sync_period_s=0.01, sync_period_s=0.2)], indirect=True
)
def test_full_sync_every_sync_period(follower: Follower) -> None:
    follower.wait_for(lambda: len(follower.recorder.syncs) >= 3)
    assert {m.sync for m in follower.recorder.syncs} == {"full"}
    assert all(m.latency_s is None for m in follower.recorder.syncs)


def test_failed_apply_is_retried_full_on_the_next_change(follower: Follower) -> None:
    follower.wait_for(lambda: len(follower.recorder.syncs) == 1)
    follower.fake.fail_next = "simulated failure"
    follower.append(line(svc("a", "172.30.0.1")) + line(eps("a", ["10.1.0.1"])))
    follower.wait_for(lambda: bool(follower.warnings))
    assert "simulated failure" in follower.warnings[0]
    time.sleep(0.3)  # no retry storm: without a new change it waits for sync_period (30 s)
    assert len(follower.warnings) == 1 and len(follower.recorder.syncs) == 1
    follower.append(line(svc("b", "172.30.0.2")))
    follower.wait_for(lambda: len(follower.recorder.syncs) == 2)
    assert follower.recorder.syncs[1].sync == "full"
    assert "10.1.0.1:80" in follower.nat_text()


@pytest.mark.parametrize(
    "follower", [RunnerConfig(min_sync_period_s=0.01, sync_period_s=0.3)], indirect=True
)
def test_failed_apply_is_retried_after_sync_period(follower: Follower) -> None:
    follower.wait_for(lambda: len(follower.recorder.syncs) >= 1)
    follower.fake.fail_next = "simulated failure"
    follower.append(line(svc("a", "172.30.0.1")) + line(eps("a", ["10.1.0.1"])))
    follower.wait_for(lambda: bool(follower.warnings))
    follower.wait_for(lambda: "10.1.0.1:80" in follower.nat_text())
    assert len(follower.warnings) == 1


def test_bad_line_stops_without_applying_the_batch(follower: Follower) -> None:
    follower.wait_for(lambda: len(follower.recorder.syncs) == 1)
    restores = len(follower.fake.restores)
    follower.append(
        line(svc("a", "172.30.0.1")) + b'{"type": "ADDED", "object": {"kind": "Pod"}}\n'
    )
    follower.wait_for(lambda: follower.error is not None)
    assert isinstance(follower.error, LogLineError)
    assert str(follower.error).endswith(
        "events.jsonl:2: unsupported kind 'Pod' (expected Service or EndpointSlice)"
    )
    assert len(follower.fake.restores) == restores
