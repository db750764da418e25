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
