"""A throwaway network namespace on the host kernel, removed on exit, error, Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from types import FrameType, TracebackType
from typing import Any


class NodeUnavailable(RuntimeError):
    """The node cannot start here; the message says what is missing and how to install it."""


def _check() -> None:
    if os.geteuid() != 0:
        raise NodeUnavailable("a netns node needs root (run as root, or with sudo)")
    if shutil.which("ip") is None:
        raise NodeUnavailable("`ip` not found: apt-get install iproute2")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class _SigtermUnwinds:
    """While any namespace is open, SIGTERM raises KeyboardInterrupt so `with` blocks clean up."""

    open_count = 0
    previous: Any = None

    @classmethod
    def acquire(cls) -> None:
        if cls.open_count == 0:
            cls.previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        cls.open_count += 1

    @classmethod
    def release(cls) -> None:
        cls.open_count -= 1
        if cls.open_count == 0:
            signal.signal(signal.SIGTERM, cls.previous)


class Netns:
    """`with Netns() as ns:` creates a fresh namespace; leaving the block deletes it."""

    def __init__(self, prefix: str = "kpbench") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Netns:
        _check()
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        _SigtermUnwinds.acquire()
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

    def run(self, *argv: str) -> str:
        """Run a command inside; its stdout. Raises CalledProcessError on failure."""
        return self.exec(*argv).stdout

    def delete(self) -> None:
        # Processes left inside would keep the namespace alive: end them first.
        pids = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        ).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.delete()
        finally:
            _SigtermUnwinds.release()


def existing() -> list[str]:
    """Names of the network namespaces `ip netns` knows."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
