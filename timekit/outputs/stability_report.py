"""`timekit analyze stability`: each reference's ADEV/MDEV/TDEV with 95 % intervals, and the holdover.

The samples are the evidence the assessment read (each server's fit window, or every usable sample
since `--since`), from its newest step on (a step is no frequency noise), as `analysis.stability`
puts them on an even grid. Per server, `holdover_s` is how long that reference's own interval stays
within ± the holdover width without a new sample; the document's `holdover` is the same for the
interval `now` gives (every reference, by majority).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from timekit.analysis.assessment import Assessment, Evidence, server_evidence
from timekit.analysis.holdover import find_holdover
from timekit.analysis.interval import IntervalPolicy, server_bound
from timekit.analysis.series import on_the_wall_clock_of_now
from timekit.analysis.stability import NOISE_NAMES, Deviations, deviations, phase_grid, stability_bound
from timekit.outputs.holdover_words import holdover_doc, holdover_words


def _floats(a: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in a]


def _pairs(a: np.ndarray) -> list[list[float | None]]:
    return [_floats(row) for row in a]


def stability_results(ev: Evidence, found: Assessment, policy: IntervalPolicy) -> list[dict[str, Any]]:
    """One result per server with usable samples (DESIGN.md contract fields first)."""
    out = []
    for s in found.servers:
        series, fit = ev.series.get(s.server), s.fit
        if series is None or fit is None or not len(series):
            continue
        walled = on_the_wall_clock_of_now(series, now_realtime_ns=ev.realtime_ns,
                                          now_boottime_ns=ev.boottime_ns, boot_id=ev.boot_id)
        regime = walled.select(walled.t_local_ns >= fit.steps[-1].t_ns) if fit.steps else walled
        grid = phase_grid(regime.t_local_ns, regime.offset_s, regime.delay_s)
        dev: Deviations | None = deviations(grid) if grid.status == "ok" else None
        sev = server_evidence(series, fit, policy, ev.boot_id)

        def half_width_at(ahead_s: float, sev: Any = sev) -> float | None:
            return server_bound(sev, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                                policy=policy, now_monotonic_ns=ev.monotonic_ns, now_raw_ns=ev.raw_ns,
                                ahead_s=ahead_s).half_width_s

        bound_now = server_bound(sev, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                                 policy=policy, now_monotonic_ns=ev.monotonic_ns, now_raw_ns=ev.raw_ns)
        hold = (find_holdover(half_width_at, policy.holdover_width_s,
                              policy.void_after_s - (bound_now.age_s or 0.0))
                if bound_now.status == "ok" else None)
        used = stability_bound(grid, sigmas=policy.stability_sigmas, floor_ppm=policy.stability_floor_ppm)
        empty: list[Any] = []
        out.append({
            "server": s.server,
            "tau_s": _floats(dev.tau_s) if dev else empty,
            "adev": _floats(dev.adev) if dev else empty,
            "adev_ci95": _pairs(dev.adev_ci) if dev else empty,
            "tdev": _floats(dev.tdev) if dev else empty,
            "holdover_s": None if hold is None else hold.seconds,
            "tdev_ci95": _pairs(dev.tdev_ci) if dev else empty,
            "mdev": _floats(dev.mdev) if dev else empty,
            "mdev_ci95": _pairs(dev.mdev_ci) if dev else empty,
            "n_terms": [int(n) for n in dev.n_terms] if dev else empty,
            "noise": [NOISE_NAMES[int(a)] for a in dev.alpha] if dev else empty,
            "status": grid.status, "reason": grid.reason, "tau0_s": grid.tau0_s if grid.x_s.size else None,
            "n_samples": grid.n_samples, "n_used": grid.n_used, "n_filled": grid.n_filled,
            "span_s": grid.span_s,
            "holdover": holdover_doc(hold),
            # what the interval's growth leans on: ADEV's upper bound at each tau (used only where the drift
            # is measured and the kernel followed; see analysis.interval)
            "growth_adev_upper": _floats(used.adev_upper) if used is not None else None,
            "in_interval_growth": sev.stability is not None,
        })
    return out


def stability_table(doc: dict[str, Any]) -> Any:
    """Rich tables for a person: one per server (τ, ADEV [95 %], MDEV, TDEV, noise), then the holdover."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from timekit.units import fmt_s

    parts: list[Any] = []
    for r in doc["results"]:
        if not r["tau_s"]:
            parts.append(Text(f"{r['server']}: no stability ({r['status']}: {r['reason']})"))
            continue
        t = Table(title=f"{r['server']}: {r['reason']}, span {r['span_s']:.0f} s", title_justify="left")
        for col in ("tau", "ADEV", "95 %", "MDEV", "TDEV", "95 %", "noise"):
            t.add_column(col, justify="left" if col == "noise" else "right")
        for i, tau in enumerate(r["tau_s"]):
            a_lo, a_hi = r["adev_ci95"][i]
            t_lo, t_hi = r["tdev_ci95"][i]
            t.add_row(f"{tau:.4g} s", f"{r['adev'][i]:.3e}", f"{a_lo:.2e}..{a_hi:.2e}", f"{r['mdev'][i]:.3e}",
                      fmt_s(r["tdev"][i], signed=False), f"{fmt_s(t_lo, False)}..{fmt_s(t_hi, False)}",
                      r["noise"][i])
        parts.append(t)
        h = r.get("holdover")
        if h and h["seconds"] is not None:
            parts.append(Text(f"  holdover of {r['server']} alone: {holdover_words(h)}"))
    h = doc.get("holdover")
    if h is not None:
        parts.append(Text(f"holdover (the interval of `timekit now`): {holdover_words(h)}"))
    return Group(*parts)
