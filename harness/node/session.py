"""Run one harness program inside a fresh node and bring back the JSON line it prints last."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.node.base import NodeInfo, NodeUnavailable, create_node


class InsideRunFailed(RuntimeError):
    """The program inside the node failed; the message carries its stderr."""


def run_inside(
    kind: str,
    command: Callable[[Path, NodeInfo], list[str]],
    *,
    needs_ipvs: bool = False,
    timeout: float = 900,
    announce: str = "",
    collect: Callable[[Path], None] | None = None,
) -> tuple[NodeInfo, dict[str, Any]]:
    """Start a `kind` node, run `command(workdir, info)` inside it, stop the node.

    `workdir` is a directory both sides can write (the UML run directory, or a temporary
    one for the netns node), removed with the node: `collect(workdir)` runs before that.
    """
    with create_node(kind) as node:
        info = node.info
        if needs_ipvs and not info.has_ipvs:
            raise NodeUnavailable(
                f"the {kind} node's kernel ({info.kernel}) has no IPVS (modprobe ip_vs found nothing);"
                " use --node uml"
            )
        if announce:
            print(
                f"{kind} node up in {info.start_s} s (kernel {info.kernel}); {announce}",
                file=sys.stderr,
                flush=True,
            )
        done = node.run(command(node.workdir, info), timeout=timeout)
        if collect is not None and done.returncode == 0:
            collect(node.workdir)
    if done.returncode != 0 or not done.stdout.strip():
        raise InsideRunFailed(
            f"{done.stderr}error: the run inside the node failed (exit {done.returncode})"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return info, result


def report_failures(run: Callable[[], int]) -> int:
    """Exit codes and messages, never tracebacks, for the commands that drive a node."""
    try:
        return run()
    except (NodeUnavailable, InsideRunFailed) as exc:
        print(f"error: {exc}" if isinstance(exc, NodeUnavailable) else str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the node was stopped and cleaned up", file=sys.stderr)
        return 130
