"""Signal handling shared by everything that must clean up: SIGTERM unwinds like Ctrl-C."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class SigtermUnwinds:
    """While any node or namespace is open, SIGTERM raises KeyboardInterrupt, so that the
    `with` blocks that own them unwind and clean up as they do on Ctrl-C."""

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
