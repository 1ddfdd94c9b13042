"""The thin adapter to the kernel's iptables: iptables-restore and iptables-save, nft or legacy."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Literal, Protocol

from reconciler.errors import RestoreError, ToolMissing

Variant = Literal["legacy", "nft"]
_ERROR_LINE = re.compile(r"(?:Error occurred at line|line):? (\d+)")
INSTALL_HINT = "install Debian's iptables package: apt-get install iptables"


class IptablesBackend(Protocol):
    """What a proxier needs from iptables; FakeIptables implements it for unit tests."""

    def restore(self, data: bytes) -> None:
        """Apply restore input with --noflush; raise RestoreError, changing nothing, on failure."""

    def save(self, table: str) -> str:
        """iptables-save output of one table."""

    def begin_save(self) -> Callable[[], str]:
        """Start reading every table back; the returned function waits for the text."""


def detect_variant() -> Variant:
    """The backend `iptables` on this machine uses, as kube-proxy's default would."""
    binary = shutil.which("iptables")
    if binary is None:
        raise ToolMissing(f"iptables not found; {INSTALL_HINT}")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return "nft" if "nf_tables" in out.stdout else "legacy"


class KernelIptables:
    """Runs iptables-{legacy,nft}-restore/-save in the current network namespace."""

    def __init__(self, variant: Variant | None = None) -> None:
        self.variant: Variant = variant or detect_variant()
        self.restore_bin = self._find(f"iptables-{self.variant}-restore")
        self.save_bin = self._find(f"iptables-{self.variant}-save")

    @staticmethod
    def _find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            raise ToolMissing(f"{name} not found; {INSTALL_HINT}")
        return path

    def restore(self, data: bytes) -> None:
        # -w 5: wait for the xtables lock like kube-proxy; --noflush: leave other chains alone.
        proc = subprocess.run(
            [self.restore_bin, "-w", "5", "--noflush", "--counters"],
            input=data,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace").strip()
            match = _ERROR_LINE.search(stderr)
            number = int(match.group(1)) if match else None
            lines = data.decode(errors="replace").splitlines()
            line = lines[number - 1] if number and 0 < number <= len(lines) else None
            first = next((s for s in stderr.splitlines() if s and "deprecated" not in s), stderr)
            raise RestoreError(f"{self.restore_bin} failed: {first}", number, line)

    def begin_save(self) -> Callable[[], str]:
        # One iptables-save for all tables, running while the caller renders: most of its
        # time is spent waiting in the kernel (table reads), not on this CPU.
        proc = subprocess.Popen(
            [self.save_bin], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

        def result() -> str:
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RestoreError(f"{self.save_bin} failed: {err.strip()}")
            return out

        return result

    def save(self, table: str) -> str:
        proc = subprocess.run(
            [self.save_bin, "-t", table], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RestoreError(f"{self.save_bin} -t {table} failed: {proc.stderr.strip()}")
        return proc.stdout


def set_sysctl(name: str, value: str) -> bool:
    """Write /proc/sys/NAME in this network namespace; False if the kernel refuses."""
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}", "w") as fh:
            fh.write(value)
        return True
    except OSError:
        return False
