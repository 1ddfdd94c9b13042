"""The host node: a fresh network namespace on the host kernel (native speed; needs root).

Pods it creates are further host namespaces named after the node, so they are found and
removed with it. IPVS is there only if the host kernel has it, which `info.has_ipvs` says.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.netns import Netns, existing
from harness.node.base import CALIBRATE_SYSCALL, NodeInfo
from harness.signals import SigtermUnwinds
from reconciler.iptables.kernel import detect_variant

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class NetnsNode:
    def __init__(self) -> None:
        self._workdir: Path | None = None
        self._netns = Netns("kpbench-node")
        self.name = self._netns.name
        self.info = NodeInfo("netns", platform.release(), 0.0, False, 0.0)

    def __enter__(self) -> NetnsNode:
        started = time.monotonic()
        SigtermUnwinds.acquire()
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="kpbench-netns-"))
            self._netns.__enter__()
            self._start_lifeline()
            syscall_us = float(
                self.run([sys.executable, "-c", CALIBRATE_SYSCALL], timeout=60).stdout
            )
            subprocess.run(["modprobe", "-q", "ip_vs"], capture_output=True, check=False)
            has_ipvs = self.run(["test", "-e", "/proc/net/ip_vs"]).returncode == 0
        except BaseException:
            self.__exit__()
            raise
        self.info = NodeInfo(
            "netns",
            platform.release(),
            syscall_us,
            has_ipvs,
            round(time.monotonic() - started, 3),
            detect_variant(),
        )
        return self

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None, "node not started"
        return self._workdir

    def _start_lifeline(self) -> None:
        """A watcher that removes the node's namespaces if this process dies without doing it
        (even by SIGKILL): it waits for EOF on a pipe whose write end only we hold."""
        read_end, self._lifeline_w = os.pipe()
        script = (
            'read -r _ || true; for ns in $(ip netns list | cut -d" " -f1); do case "$ns" in'
            f' {self.name}|{self.name}-*) for p in $(ip netns pids "$ns"); do kill -KILL "$p"; done;'
            f' ip netns del "$ns";; esac; done; rm -rf "{self.workdir}"'
        )
        self._watcher = subprocess.Popen(
            ["sh", "-c", script],
            stdin=read_end,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(read_end)

    def __exit__(self, *exc: object) -> None:
        try:
            # Pods are host namespaces named "<node>-...": remove them with the node.
            for name in existing():
                if name.startswith(f"{self.name}-"):
                    Netns.attach(name).delete()
            self._netns.delete()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
            if hasattr(self, "_watcher"):
                os.close(self._lifeline_w)  # the watcher finds nothing left and exits
                self._watcher.wait(timeout=10)
        finally:
            SigtermUnwinds.release()

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), KPBENCH_NODE=self.name)
        full_env.update(env or {})
        return subprocess.run(
            self._netns.exec_argv(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
