"""Helpers for bulk work on the hot paths (replay, drain, render)."""

from __future__ import annotations

import gc
from types import TracebackType


class no_cyclic_gc:
    """Pause the cyclic garbage collector around bulk work that allocates only acyclic values.

    A replay builds hundreds of thousands of small tuples that live on; every gen-0
    collection would rescan them (~40% of a bulk replay). On exit the survivors are moved
    to the permanent generation (gc.freeze), or the first collection after re-enabling
    would scan them all at once. Reference counting still frees them when they are
    replaced: none of these values form cycles, so nothing frozen can leak.
    """

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._was_enabled:
            gc.freeze()
            gc.enable()
