"""Read the event log, whole or as it grows, turning each line into an event or a FILE:LINE error."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.bulk import no_cyclic_gc
from reconciler.errors import InvalidEvent, LogLineError, ReconcilerError
from reconciler.events import Event, decode_line

READ_CHUNK = 1 << 20


class LogReader:
    """Decodes complete lines; a partial last line is kept until its newline arrives.

    With `skip_invalid`, each bad line goes to `report` and is skipped; otherwise the first
    bad line raises LogLineError before any later line is decoded.
    """

    def __init__(
        self,
        path: Path,
        *,
        skip_invalid: bool = False,
        report: Callable[[LogLineError], None] | None = None,
    ) -> None:
        self.path = path
        self.skip_invalid = skip_invalid
        self.report = report or (lambda err: None)
        self.line_number = 0
        self.rejected = 0
        self._partial = b""
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ReconcilerError(f"{path}: cannot read the event log: {exc.strerror}") from None

    def close(self) -> None:
        os.close(self._fd)

    def read_available(self, *, at_eof: bool = False) -> list[Event]:
        """Events from every complete line appended since the last call.

        `at_eof` treats a trailing line without newline as complete (a finished file).
        """
        chunks = [self._partial]
        while True:
            chunk = os.read(self._fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        if at_eof and data and not data.endswith(b"\n"):
            data += b"\n"
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        with no_cyclic_gc():
            return list(self._decode(data[:cut].split(b"\n")[:-1]))

    def _decode(self, lines: list[bytes]) -> Iterator[Event]:
        for line in lines:
            self.line_number += 1
            try:
                event = decode_line(line)
            except InvalidEvent as exc:
                error = LogLineError(str(self.path), self.line_number, str(exc))
                if not self.skip_invalid:
                    raise error from None
                self.rejected += 1
                self.report(error)
                continue
            if event is not None:
                yield event
