"""The embedded node: a User-Mode Linux 6.1 kernel (Debian's user-mode-linux) booted on hostfs.

The guest sees the host's root filesystem read-only, plus one writable run directory that
the host and the guest share (commands, outputs, logs). Kernel modules come from the
package's folder through a symlink tree in the guest's /run, so the host's /lib stays as it
is. Everything the node makes lives in the guest kernel or the run directory, and both are
gone when the node stops: the UML process group is killed and the directory removed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.node.base import NodeInfo, NodeUnavailable
from harness.signals import SigtermUnwinds

UML_BINARY = "linux.uml"
MODULES_DIR = Path("/usr/lib/uml/modules")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
BOOT_TIMEOUT_S = 60.0
# What the modes and pods need; modprobe pulls in the dependencies (nf_nat, ip_set, ...).
MODULES = (
    "veth bridge ip_tables iptable_nat iptable_filter iptable_mangle"
    " xt_tcpudp ipt_REJECT xt_statistic xt_comment xt_addrtype xt_mark xt_conntrack xt_MASQUERADE"
    " xt_nat xt_recent xt_set ip_set_hash_ip ip_set_hash_ipport ip_set_hash_ipportip"
    " ip_set_hash_ipportnet ip_set_bitmap_port ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_sh"
    " dummy nf_conntrack_netlink"
)

SUPERVISOR = """
run=$1; shift
exec 3<&0
"$@" < /dev/null 3<&- &
uml=$!
# linux.uml makes itself a session and group leader, so it and its helpers are killed by
# their own group (-$uml). The harness holds the only write end of our stdin (now fd 3;
# a background job's stdin would be /dev/null): EOF means the harness is gone, however
# it died.
( read -r _ <&3; rm -rf "$run"; kill -KILL -$uml; kill -KILL 0 ) 2>/dev/null &
wait $uml
kill -KILL -$uml 2>/dev/null
kill -KILL 0
"""

INIT_SCRIPT = """#!/bin/sh
# PID 1 of the kpbench UML node.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=755 tmpfs /run
mount -t hostfs none {run} -o {run}
mkdir -p /run/modroot/lib/modules /run/netns /run/tmp
ln -s {moddir} /run/modroot/lib/modules/{kver}
modprobe -a -d /run/modroot {modules} 2> {run}/modprobe.log
ip link set lo up
export TMPDIR=/run/tmp HOME=/run/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={pythonpath}
{python} -S -m harness.node.agent {run} > {run}/agent.log 2>&1
echo o > /proc/sysrq-trigger
sleep 60
"""


def _kernel_version() -> str:
    versions = sorted(p.name for p in MODULES_DIR.iterdir()) if MODULES_DIR.is_dir() else []
    if not versions:
        raise NodeUnavailable(
            f"no UML kernel modules in {MODULES_DIR}: apt-get install user-mode-linux"
        )
    return versions[-1]


class UmlNode:
    """`with UmlNode() as node:` boots a guest; `node.run(argv)` runs as root inside it."""

    def __init__(
        self, mem: str = "2G", modules: str = MODULES, extra_args: Sequence[str] = ()
    ) -> None:
        self.mem = mem
        self.modules = modules
        self.extra_args = tuple(extra_args)
        self.run_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count()
        self.info = NodeInfo("uml", "", 0.0, False, 0.0)

    def __enter__(self) -> UmlNode:
        SigtermUnwinds.acquire()
        try:
            self._start()
        except BaseException:
            self._stop()
            SigtermUnwinds.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop()
        finally:
            SigtermUnwinds.release()

    def _start(self) -> None:
        binary = shutil.which(UML_BINARY)
        if binary is None:
            raise NodeUnavailable(f"{UML_BINARY} not found: apt-get install user-mode-linux")
        if shutil.which("modprobe") is None and not Path("/usr/sbin/modprobe").exists():
            raise NodeUnavailable(
                "modprobe not found (the guest loads modules with it): apt-get install kmod"
            )
        kver = _kernel_version()
        started = time.monotonic()
        run = Path(tempfile.mkdtemp(prefix="kpbench-uml-"))
        self.run_dir = run
        (run / "cmd").mkdir()
        init = run / "init.sh"
        init.write_text(
            INIT_SCRIPT.format(
                run=run,
                moddir=MODULES_DIR / kver,
                kver=kver,
                modules=self.modules,
                pythonpath=REPO_ROOT,
                python=sys.executable,
            )
        )
        init.chmod(0o755)
        console = (run / "console.log").open("wb")
        uml_argv = [
            binary,
            f"mem={self.mem}",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            f"init={init}",
            "con0=null,fd:1",
            "con=null",
            "quiet",
            f"umid=kpbench-{run.name}",
            f"uml_dir={run}",
            *self.extra_args,
        ]
        # UML runs under a small supervisor that holds the read end of a pipe whose write end
        # only we hold: when we exit, however (even SIGKILL), it kills UML's process group
        # and removes the run directory.
        lifeline_r, self._lifeline_w = os.pipe()
        self._proc = subprocess.Popen(
            ["sh", "-c", SUPERVISOR, "kpbench-uml", str(run), *uml_argv],
            stdin=lifeline_r,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", ""), "TMPDIR": str(run)},
        )
        os.close(lifeline_r)
        console.close()
        ready = run / "ready.json"
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise NodeUnavailable(f"the UML node did not boot:\n{self._console_tail()}")
            time.sleep(0.02)
        facts = json.loads(ready.read_text())
        self.info = NodeInfo(
            "uml",
            facts["kernel"],
            facts["syscall_us"],
            facts["has_ipvs"],
            round(time.monotonic() - started, 3),
        )

    @property
    def workdir(self) -> Path:
        """Writable on both sides: the run directory, mounted read-write in the guest."""
        assert self.run_dir is not None, "node not started"
        return self.run_dir

    def _console_tail(self, lines: int = 25) -> str:
        assert self.run_dir is not None
        text = ""
        for name in ("console.log", "modprobe.log", "agent.log"):
            path = self.run_dir / name
            if path.exists():
                text += (
                    f"--- {name}\n"
                    + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                    + "\n"
                )
        return text

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        assert self.run_dir is not None and self._proc is not None, "node not started"
        cid = f"{next(self._ids):06d}"
        request = {"argv": list(argv), "env": dict(env or {}), "timeout": timeout}
        tmp = self.run_dir / "cmd" / f"{cid}.tmp"
        tmp.write_text(json.dumps(request))
        os.replace(tmp, self.run_dir / "cmd" / f"{cid}.json")
        done = self.run_dir / "done" / f"{cid}.json"
        # The agent enforces the timeout; the margin covers its polling.
        deadline = time.monotonic() + (timeout + 10 if timeout else float("inf"))
        while not done.exists():
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the UML node stopped while running {argv}:\n{self._console_tail()}"
                )
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(list(argv), timeout or 0)
            time.sleep(0.005)
        code = json.loads(done.read_text())["returncode"]
        out = (self.run_dir / "out" / f"{cid}.out").read_text(errors="replace")
        err = (self.run_dir / "out" / f"{cid}.err").read_text(errors="replace")
        return subprocess.CompletedProcess(list(argv), code, out, err)

    def _stop(self) -> None:
        proc, run = self._proc, self.run_dir
        if proc is not None and proc.poll() is None and run is not None and (run / "cmd").exists():
            with contextlib.suppress(OSError):
                (run / "cmd" / "stop.json").write_text('{"op": "stop"}')
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        # Closing the lifeline makes the supervisor kill UML's group (the guest's processes are
        # host processes of it) if the guest did not power off by itself.
        with contextlib.suppress(AttributeError, OSError):
            os.close(self._lifeline_w)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if run is not None:
            shutil.rmtree(run, ignore_errors=True)
        self._proc = None
        self.run_dir = None
