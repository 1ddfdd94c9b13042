"""A throwaway network namespace on the host kernel, removed on exit, error, Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from types import FrameType, TracebackType


class NodeUnavailable(RuntimeError):
    """The node cannot start here; the message says what is missing and how to install it."""


def _check() -> None:
    if os.geteuid() != 0:
        raise NodeUnavailable("a netns node needs root (run as root, or with sudo)")
    if shutil.which("ip") is None:
        raise NodeUnavailable("`ip` not found: apt-get install iproute2")


class Netns:
    """`with Netns() as ns:` creates a fresh namespace; leaving the block deletes it."""

    def __init__(self, prefix: str = "kpbench") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Netns:
        _check()
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        # SIGTERM would skip __exit__: turn it into an exception that unwinds through it.
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _raise_interrupt)
        self.exec("ip", "link", "set", "lo", "up")
        return self

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(
        self, *argv: str, check: bool = True, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.exec_argv(*argv), input=stdin, capture_output=True, text=True, check=check
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pids = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True
        ).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
