"""The one exception tree of timekit.

TimekitError
├── UsageError       bad input from the user: address, port, config, flag values
├── CollectorError   the outside world failed us (clock, kernel, socket, lab)
├── StoreError       the database is corrupt, foreign, locked or unwritable
│   └── LockedError  another run holds the collect lock (exit 75, EX_TEMPFAIL)
└── AnalysisError    not enough or inconsistent data for an answer

Only the CLI turns these into exit codes and one-line messages (timekit/cli.py).
"""

from __future__ import annotations


class TimekitError(Exception):
    """Base of every error timekit raises on purpose."""

    exit_code = 1


class UsageError(TimekitError):
    """Bad input from the user (address, port, config file, option value)."""

    exit_code = 2


class CollectorError(TimekitError):
    """A clock, kernel interface, socket or lab process failed."""


class StoreError(TimekitError):
    """The sample store is corrupt, foreign, unwritable or from a newer timekit."""


class LockedError(StoreError):
    """Another collect run holds the lock."""

    exit_code = 75


class AnalysisError(TimekitError):
    """Not enough (or inconsistent) evidence for an answer."""


def os_error_words(exc: OSError) -> str:
    """An OSError as one line: 'No space left on device: /var/lib/timekit/timekit.db'."""
    return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"


def error_line(exc: Exception, *, debug_hint: str = "set TIMEKIT_DEBUG=1 for a traceback") -> str:
    """Any failure as one line of words (exit codes are the CLI's): bad input, timekit's own error,
    an OS error, or a bug named as an internal error (re-raised when TIMEKIT_DEBUG is set)."""
    import os

    if isinstance(exc, UsageError | ValueError):
        return f"bad input: {' '.join(str(exc).split())}"
    if isinstance(exc, TimekitError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        return os_error_words(exc)
    if os.environ.get("TIMEKIT_DEBUG"):
        raise exc
    return f"internal error: {type(exc).__name__}: {exc} ({debug_hint})"
