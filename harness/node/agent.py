"""Runs inside a UML guest: executes the commands the host drops into the shared run directory.

Protocol, all files in RUN (the host's directory, mounted writable in the guest):
  cmd/ID.json   {"argv": [...], "env": {...}, "timeout": s}  or  {"op": "stop"}
  out/ID.out, out/ID.err  the command's output
  done/ID.json  {"returncode": n}
  ready.json    written once: {"kernel": ..., "syscall_us": ...}
Stdlib only: the guest starts it with `python -S` to keep the boot short.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.01


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _calibrate() -> float:
    n, best = 4000, float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            os.getppid()
        best = min(best, (time.perf_counter() - t) / n)
    return round(best * 1e6, 3)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def main(run_dir: str) -> int:
    run = Path(run_dir)
    cmd_dir, out_dir, done_dir = run / "cmd", run / "out", run / "done"
    for d in (out_dir, done_dir):
        d.mkdir(exist_ok=True)
    has_ipvs = Path("/proc/net/ip_vs").exists()
    _write_json(
        run / "ready.json",
        {"kernel": os.uname().release, "syscall_us": _calibrate(), "has_ipvs": has_ipvs},
    )
    running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    while True:
        for name in sorted(os.listdir(cmd_dir)):
            if not name.endswith(".json"):
                continue
            cid = name[:-5]
            request = json.loads((cmd_dir / name).read_text())
            os.unlink(cmd_dir / name)
            if request.get("op") == "stop":
                for proc, _ in running.values():
                    _kill(proc)
                return 0
            env = dict(os.environ)
            env.update(request.get("env") or {})
            try:
                with (
                    (out_dir / f"{cid}.out").open("wb") as out,
                    (out_dir / f"{cid}.err").open("wb") as err,
                ):
                    proc = subprocess.Popen(
                        request["argv"],
                        stdout=out,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
            except OSError as exc:
                (out_dir / f"{cid}.err").write_text(f"cannot run {request['argv'][0]}: {exc}\n")
                _write_json(done_dir / f"{cid}.json", {"returncode": 127})
                continue
            timeout = request.get("timeout")
            running[cid] = (proc, time.monotonic() + timeout if timeout else float("inf"))
        for cid, (proc, deadline) in list(running.items()):
            code = proc.poll()
            if code is None and time.monotonic() > deadline:
                _kill(proc)
                code = proc.wait()
            if code is not None:
                del running[cid]
                _write_json(done_dir / f"{cid}.json", {"returncode": code})
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
