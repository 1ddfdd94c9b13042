"""Start `python -m reconciler run --follow` as a child process inside a node, and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

POD_CIDR = "10.244.0.0/16"


@contextlib.asynccontextmanager
async def running_reconciler(
    log: Path,
    metrics: Path,
    mode: str,
    *,
    min_sync_period: str,
    iptables: str,
    output: Path,
    extra: Sequence[str] = (),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The reconciler follows `log` and writes one metrics line per sync; its stdout and
    stderr go to `output`. Leaving the block stops it with SIGTERM (SIGKILL after 15 s)."""
    with output.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "--log",
            str(log),
            "--mode",
            mode,
            "--cluster-cidr",
            POD_CIDR,
            "--follow",
            "--min-sync-period",
            min_sync_period,
            "--iptables",
            iptables,
            "--metrics",
            str(metrics),
            *extra,
            stdout=out,
            stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                print(
                    "warning: the reconciler did not stop on SIGTERM within 15 s; killed",
                    file=sys.stderr,
                )
                proc.kill()
                await proc.wait()


def output_tail(output: Path, lines: int = 10) -> str:
    """The reconciler's last words, for error messages."""
    if not output.exists():
        return ""
    return "\n".join(output.read_text(errors="replace").splitlines()[-lines:])
