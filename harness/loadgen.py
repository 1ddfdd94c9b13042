"""The bench's load generator: locust, in its own process, driving HTTP to ClusterIPs.

`python -m harness.loadgen --target NAME=IP:PORT ... --out DIR` runs locust headless from
Python (no web UI). Each locust user is bound to one service and sends `GET /` on a new TCP
connection per request (`--keepalive 1`, how load balancing is measured) or reuses a
connection for K requests (`--keepalive K`). Every request becomes a row of
DIR/requests.csv: time, service, connection id, the backend that answered (our backends
answer with their pod's name) or the failure kind. locust's own statistics go to
DIR/locust.json. It stops after `--connections` new connections per service, after
`--duration` seconds, or on SIGTERM, and always writes what it measured.

locust monkey-patches the standard library with gevent when imported, so this module
imports it first and must run as its own process (../shared/reference/libraries.md §2).
"""

from __future__ import annotations

# isort: off
import locust  # first: its gevent monkey-patching must precede every socket user

# isort: on
import argparse
import csv
import itertools
import json
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import gevent
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import save_stats_json

from harness.httpwire import (
    REQUEST_CLOSE,
    REQUEST_KEEP,
    BadResponse,
    failure_kind,
    read_response,
)

CSV_COLUMNS = ("t", "service", "connection", "backend", "outcome")


class Recorder:
    """Per-request rows to DIR/requests.csv (flushed every second, so an interrupted run keeps
    them) and per-service counts of new connections for the --connections bound."""

    def __init__(self, path: Path) -> None:
        self._fh: TextIO = path.open("w", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(CSV_COLUMNS)
        self.started = time.monotonic()
        self._flushed = self.started
        self.connections: Counter[str] = Counter()

    def row(self, service: str, connection: int, backend: str, outcome: str) -> None:
        now = time.monotonic()
        self._writer.writerow((f"{now - self.started:.4f}", service, connection, backend, outcome))
        if now - self._flushed > 1.0:
            self._fh.flush()
            self._flushed = now

    def close(self) -> None:
        self._fh.close()


@dataclass
class Plan:
    """What the users read; run() fills the module's PLAN before the runner starts."""

    targets: list[tuple[str, str, int]] = field(default_factory=list)
    keepalive: int = 1
    connections: int = 0  # new connections per service; 0 = no bound
    timeout: float = 3.0
    recorder: Recorder | None = None
    users: Iterator[int] = field(default_factory=itertools.count)
    connection_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


PLAN = Plan()


class ServiceClient(User):
    """One locust user, bound to one service (users are spread evenly over the targets)."""

    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.service, self.host_ip, self.port = PLAN.targets[next(PLAN.users) % len(PLAN.targets)]
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._left = 0  # requests left on the open connection
        self._connection = 0

    def _connect(self) -> socket.socket:
        recorder = PLAN.recorder
        assert recorder is not None
        if PLAN.connections and recorder.connections[self.service] >= PLAN.connections:
            raise StopUser()
        recorder.connections[self.service] += 1
        self._connection = next(PLAN.connection_ids)
        self._buffer.clear()
        self._left = PLAN.keepalive
        return socket.create_connection((self.host_ip, self.port), timeout=PLAN.timeout)

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @task
    def get(self) -> None:
        recorder = PLAN.recorder
        assert recorder is not None
        started = time.perf_counter()
        backend, error = "", None
        try:
            if self._sock is None:
                self._sock = self._connect()
            request = REQUEST_CLOSE if self._left == 1 else REQUEST_KEEP
            self._sock.sendall(request)
            backend = read_response(self._sock, self._buffer)
            self._left -= 1
            if self._left == 0:
                self._close()
        except StopUser:
            raise
        except (OSError, BadResponse) as exc:
            error = exc
            self._close()
        outcome = "ok" if error is None else failure_kind(error)
        recorder.row(self.service, self._connection, backend, outcome)
        self.environment.events.request.fire(
            request_type="GET",
            name=self.service,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(backend),
            exception=error,
            context={},
        )

    def on_stop(self) -> None:
        self._close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    PLAN.targets = [_parse_target(t) for t in args.target]
    PLAN.keepalive = args.keepalive
    PLAN.connections = args.connections
    PLAN.timeout = args.timeout
    PLAN.recorder = recorder = Recorder(out / "requests.csv")
    env = Environment(user_classes=[ServiceClient], events=locust.events)
    runner = env.create_local_runner()
    users = args.users_per_service * len(PLAN.targets)

    def quit_runner() -> None:
        if runner.state not in ("stopped", "quitting"):
            runner.quit()

    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(quit_runner))
    if args.duration:
        gevent.spawn_later(args.duration, quit_runner)

    def watch_bound() -> None:
        # Users stop themselves at the bound; the run ends when none is left.
        while runner.user_count or runner.state == "spawning":
            gevent.sleep(0.2)
        quit_runner()

    runner.start(user_count=users, spawn_rate=users)
    if args.connections:
        gevent.spawn_later(1.0, watch_bound)
    runner.greenlet.join()
    elapsed = time.monotonic() - recorder.started
    recorder.close()
    # Read locust's statistics before saving them: save_stats_json resets the per-name
    # entries (libraries.md §2); the JSON is then the record.
    per_service = {
        name: {"requests": entry.num_requests, "failures": entry.num_failures}
        for (name, _), entry in env.stats.entries.items()
    }
    total = env.stats.total
    save_stats_json(env.stats, str(out / "locust"))
    return {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "per_service": per_service,
        "connections": dict(recorder.connections),
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(total.num_requests / elapsed, 1) if elapsed else None,
    }


def _parse_target(text: str) -> tuple[str, str, int]:
    name, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not name or not host or not port.isdigit():
        raise SystemExit(f"error: --target {text!r}: expected NAME=IP:PORT")
    return name, host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.loadgen", description=__doc__)
    parser.add_argument("--target", action="append", required=True, help="NAME=IP:PORT")
    parser.add_argument("--out", required=True, help="directory for requests.csv, locust.json")
    parser.add_argument("--connections", type=int, default=0, help="new connections per service")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: no bound)")
    parser.add_argument("--keepalive", type=int, default=1, help="requests per connection")
    parser.add_argument("--users-per-service", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per socket op")
    args = parser.parse_args(argv)
    if not args.connections and not args.duration:
        parser.error("give --connections or --duration (or both)")
    if args.keepalive < 1:
        parser.error("--keepalive must be >= 1")
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
