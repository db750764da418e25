"""The words timekit's types share: every status and code, one `Literal` each (JSON keeps the strings)."""

from __future__ import annotations

from typing import Literal

SyncStatus = Literal["synchronized", "free_running", "unknown"]  # the interval's and IntervalClock's
NodeStatus = Literal["ok", "suspect", "quarantined"]  # a node's skew-check health
CheckStatus = Literal["ok", "warning", "critical", "unknown"]  # a monitoring-plugin verdict
CheckMode = Literal["measure", "store", "error"]  # how `timekit check` reached its verdict
BoundStatus = Literal["ok", "no_samples", "stale", "causality_breach"]  # one reference's bound now
# a drift fit; 'cannot_tell' only as reported (`analysis.drift.reported_status`): fitted, but its 95 %
# interval is wider than the limit a drift alarm needs
FitStatus = Literal["ok", "insufficient_samples", "model_misfit", "cannot_tell"]
# why an attempt gave no usable sample (DESIGN.md; the codes after `kod_other` are additions)
ErrorCode = Literal["timeout", "network", "malformed", "bogus_origin", "bad_mode", "bad_version",
                    "zero_transmit", "unsynchronized", "kod_rate", "kod_deny", "kod_rstr", "kod_other",
                    "bad_root_distance", "rate_limited", "denied", "invalid", "clock_stepped",
                    # NTS (RFC 8915): never a fallback to unauthenticated time
                    "nts_tls", "nts_ke_error", "nts_ke_warning", "nts_unknown_critical", "nts_no_cookies",
                    "nts_bad_auth", "nts_nak"]
