"""`timekit analyze timeout`: each server's recorded round trips -> the recommended timeout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from timekit.analysis.timeouts import recommend_timeout
from timekit.units import NS_PER_S

if TYPE_CHECKING:
    from timekit.store.database import Store


def rtt_series(store: Store, *, servers: list[str] | None = None,
               since_ns: int | None = None) -> dict[str, np.ndarray]:
    """Per server, in time order: T4 − T1 of each answered attempt (s), NaN for a timeout.

    Other failures (refused, malformed, KoD) say nothing about how long a reply takes and
    are left out.
    """
    only = servers[0] if servers and len(servers) == 1 else None
    rows = store.attempt_rows(["server", "ok", "error", "t1_ns", "t4_ns"], server=only, since_ns=since_ns)
    out: dict[str, list[float]] = {}
    for server, ok, error, t1, t4 in rows:
        if servers is not None and server not in servers:
            continue
        if ok and t1 is not None and t4 is not None:
            out.setdefault(server, []).append((t4 - t1) / NS_PER_S)
        elif error == "timeout":
            out.setdefault(server, []).append(float("nan"))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def timeout_results(store: Store, *, servers: list[str] | None = None,
                    since_ns: int | None = None) -> list[dict[str, Any]]:
    """The DESIGN.md contract fields first (server, timeout_s, method, rtt_p50_s, rtt_p99_s)."""
    results = []
    for server, rtt in rtt_series(store, servers=servers, since_ns=since_ns).items():
        rec = recommend_timeout(rtt)
        results.append({"server": server, "timeout_s": rec.timeout_s, "method": rec.method,
                        "rtt_p50_s": rec.rtt_p50_s, "rtt_p99_s": rec.rtt_p99_s, "status": rec.status,
                        "reason": rec.reason, "n_samples": rec.n_samples, "n_lost": rec.n_lost,
                        "false_timeout_target": rec.false_timeout_target,
                        "methods": [{"method": m.method, "timeout_s": m.timeout_s,
                                     "false_timeout_rate": m.false_timeout_rate,
                                     "mean_detection_s": m.mean_detection_s} for m in rec.methods]})
    return results
