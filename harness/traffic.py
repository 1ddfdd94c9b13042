"""A plain HTTP client for smoke runs: R requests, each on a new TCP connection, tallied per
backend and per failure kind. Runs as its own process inside the node."""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from harness.httpwire import BadResponse, failure_kind, one_request


def run(host: str, port: int, requests: int, timeout: float) -> dict[str, object]:
    backends: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    for _ in range(requests):
        try:
            backends[one_request(host, port, timeout)] += 1
        except (OSError, BadResponse) as exc:
            failures[failure_kind(exc)] += 1
    elapsed = time.perf_counter() - started
    return {
        "requests": requests,
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "backends": dict(sorted(backends.items())),
        "elapsed_s": round(elapsed, 3),
        "connections_per_s": round(requests / elapsed, 1) if elapsed else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.traffic")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.host, args.port, args.requests, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
