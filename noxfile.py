"""nox sessions: `nox -s tests` (unit + real-kernel tests), `nox -s bench` (the main job),
`nox -s gate` (the regression gate), `nox -s targets` (per-issue benchmarks), `nox -s lint`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# Kernel tools the product drives, and the Debian package that brings each.
SYSTEM_TOOLS = {
    "iptables": "iptables",
    "iptables-legacy-restore": "iptables",
    "iptables-nft-restore": "iptables",
    "ipset": "ipset",
    "ipvsadm": "ipvsadm",
    "ip": "iproute2",
    "modprobe": "kmod",
    "linux.uml": "user-mode-linux",
}
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def _which(tool: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN)
    return shutil.which(tool, path=path)


def ensure_system_packages(session: nox.Session) -> None:
    """Install missing Debian packages when root; otherwise say exactly what to install."""
    missing = sorted({pkg for tool, pkg in SYSTEM_TOOLS.items() if _which(tool) is None})
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() == 0 and _which("apt-get"):
        session.log(f"installing Debian packages: {' '.join(missing)}")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-q", external=True, env=env)
        session.run(*command, external=True, env=env)
    else:
        session.warn(
            f"missing Debian packages: {' '.join(missing)}; install them with: sudo {' '.join(command)}"
            " (tests that need them will be skipped, with the reason)"
        )


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and real-kernel tests (the latter need root, else they skip saying so)."""
    ensure_system_packages(session)
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not bench and not gate", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The main job: the iptables-vs-ipvs comparison into results/<run-id>/ (about 40 min;
    `nox -s bench -- --quick` takes under 10). Arguments after -- go to `python -m harness bench`."""
    ensure_system_packages(session)
    session.install("-e", ".")
    session.run("python", "-m", "harness", "bench", *session.posargs)


@nox.session
def targets(session: nox.Session) -> None:
    """The per-issue targets: hot-path, node and calibrate benchmarks, then a host-kernel demo."""
    ensure_system_packages(session)
    session.install("-e", ".[test]")
    out = Path("results") / "bench"
    out.mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest",
        "tests/bench",
        "-m",
        "bench",
        "-p",
        "no:cacheprovider",
        "--benchmark-columns=min,median,max,rounds",
        f"--benchmark-json={out / 'benchmarks.json'}",
        *session.posargs,
    )
    if os.geteuid() == 0:
        session.run("python", "-m", "harness", "demo", "--services", "1000", "--endpoints", "10")
    else:
        session.warn("skipping the real-kernel demo: it needs root to create a network namespace")


@nox.session
def gate(session: nox.Session) -> None:
    """Hot-path benchmarks against results/baseline/benchmarks.json; fails on a regression.

    `nox -s gate -- --baseline PATH` compares with another baseline; `-- --refresh` makes
    this run the baseline (see the README for when that is legitimate)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "harness", "gate", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the project."""
    session.install("-e", ".[test,lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
