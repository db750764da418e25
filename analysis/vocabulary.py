"""The words timekit's types share: every status and code, one `Literal` each (JSON keeps the strings)."""

from __future__ import annotations

from typing import Literal

SyncStatus = Literal["synchronized", "free_running", "unknown"]  # the interval's and IntervalClock's
NodeStatus = Literal["ok", "suspect", "quarantined"]  # a node's skew-check health
CheckStatus = Literal["ok", "warning", "critical", "unknown"]  # a monitoring-plugin verdict
CheckMode = Literal["measure", "store", "error"]  # how `timekit check` reached its verdict
