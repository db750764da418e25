"""`timekit analyze drift`: the drift fit per server, as the DESIGN.md JSON contract wants it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from timekit.analysis.drift import DriftFit, fit_drift
from timekit.analysis.interval import IntervalPolicy
from timekit.evidence import Series, load_series

if TYPE_CHECKING:
    from timekit.store import Store


def fit_series(series: Series, max_root_distance_s: float = IntervalPolicy.max_root_distance_s) -> DriftFit:
    """Fit one server's usable samples (root distance within bounds, N26)."""
    s = series.select(series.root_distance_s <= max_root_distance_s)
    if np.any(np.diff(s.t_local_ns) < 0):  # wall clock stepped back: the fit needs time order
        s = s.select(np.argsort(s.t_local_ns, kind="stable"))
    return fit_drift(s.t_local_ns, s.offset_s, s.delay_s, s.root_distance_s)


def drift_result(server: str, fit: DriftFit) -> dict[str, Any]:
    """The contract fields first (server, drift_ppm, drift_ci95_ppm, offset_s, n_samples, span_s)."""
    return {
        "server": server, "drift_ppm": fit.drift_ppm,
        "drift_ci95_ppm": None if fit.drift_ci95_ppm is None else list(fit.drift_ci95_ppm),
        "offset_s": fit.offset_s, "n_samples": fit.n_samples, "span_s": fit.span_s,
        "status": fit.status, "reason": fit.reason, "drift_se_ppm": fit.drift_se_ppm,
        "drift_bound_ppm": None if fit.drift_bound_ppm is None else list(fit.drift_bound_ppm),
        "offset_se_s": fit.offset_se_s, "n_used": fit.n_used, "t_start_ns": fit.t_start_ns,
        "t_end_ns": fit.t_end_ns, "residual_std_s": fit.residual_std_s,
        "steps": [{"t_ns": st.t_ns, "size_s": st.size_s} for st in fit.steps],
        "n_outliers": fit.n_outliers, "n_trimmed_old": fit.n_trimmed_old, "runs_z": fit.runs_z,
    }


def drift_results(store: Store, *, servers: list[str] | None = None,
                  since_ns: int | None = None) -> list[dict[str, Any]]:
    """One result per server with usable samples (all of them when `servers` is None)."""
    only = servers[0] if servers and len(servers) == 1 else None
    series = load_series(store, server=only, since_ns=since_ns)
    return [drift_result(name, fit_series(s)) for name, s in series.items()
            if servers is None or name in servers]
