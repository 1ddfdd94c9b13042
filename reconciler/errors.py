"""The error hierarchy: bad log input on one side, failed kernel programming on the other."""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error the reconciler reports to the user instead of a traceback."""


class InvalidEvent(ReconcilerError):
    """One watch event that cannot be accepted; the reader adds file and line."""


class LogLineError(ReconcilerError):
    """A rejected log line, formatted as FILE:LINE: reason."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class ApplyError(ReconcilerError):
    """The kernel refused a change; nothing of that change was applied."""


class RestoreError(ApplyError):
    """iptables-restore rejected its input; `line` is the offending input line, if known."""

    def __init__(self, message: str, line_number: int | None = None, line: str | None = None):
        detail = message
        if line_number is not None and line is not None:
            detail = f"{message} (input line {line_number}: {line})"
        super().__init__(detail)
        self.line_number = line_number
        self.line = line


class ToolMissing(ReconcilerError):
    """A kernel tool the mode needs is not installed."""
