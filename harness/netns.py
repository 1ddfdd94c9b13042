"""A throwaway network namespace on the host kernel, removed on exit, error, Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from types import TracebackType

from harness.node.base import NodeUnavailable
from harness.signals import SigtermUnwinds


def _check() -> None:
    if os.geteuid() != 0:
        raise NodeUnavailable("a netns node needs root (run as root, or with sudo)")
    if shutil.which("ip") is None:
        raise NodeUnavailable("`ip` not found: apt-get install iproute2")


class Netns:
    """`with Netns() as ns:` creates a fresh namespace; leaving the block deletes it."""

    def __init__(self, prefix: str = "kpbench") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"

    @classmethod
    def attach(cls, name: str) -> Netns:
        """An existing namespace, to run commands in or delete."""
        ns = cls.__new__(cls)
        ns.name = name
        return ns

    def __enter__(self) -> Netns:
        _check()
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        SigtermUnwinds.acquire()
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
            SigtermUnwinds.release()


def existing() -> list[str]:
    """Names of the network namespaces `ip netns` knows."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
