"""`timekit analyze drift`: each server's one drift fit, as the DESIGN.md JSON contract wants it."""

from __future__ import annotations

from typing import Any

from timekit.analysis.assessment import Assessment
from timekit.analysis.drift import DriftFit, reported_status


def drift_result(server: str, fit: DriftFit) -> dict[str, Any]:
    """The contract fields first (server, drift_ppm, drift_ci95_ppm, offset_s, n_samples, span_s);
    `status` is the reported one ('cannot_tell' for a fit too uncertain to say anything)."""
    status, reason = reported_status(fit)
    return {
        "server": server, "drift_ppm": fit.drift_ppm,
        "drift_ci95_ppm": None if fit.drift_ci95_ppm is None else list(fit.drift_ci95_ppm),
        "offset_s": fit.offset_s, "n_samples": fit.n_samples, "span_s": fit.span_s,
        "status": status, "reason": reason, "drift_se_ppm": fit.drift_se_ppm,
        "drift_bound_ppm": None if fit.drift_bound_ppm is None else list(fit.drift_bound_ppm),
        "offset_se_s": fit.offset_se_s, "n_used": fit.n_used, "t_start_ns": fit.t_start_ns,
        "t_end_ns": fit.t_end_ns, "residual_std_s": fit.residual_std_s,
        "steps": [{"t_ns": st.t_ns, "size_s": st.size_s} for st in fit.steps],
        "n_outliers": fit.n_outliers, "n_trimmed_old": fit.n_trimmed_old, "runs_z": fit.runs_z,
    }


def drift_results(found: Assessment) -> list[dict[str, Any]]:
    """One result per server with usable samples, from the assessment's fits (sorted by name)."""
    return [drift_result(s.server, s.fit) for s in found.servers if s.fit is not None]
