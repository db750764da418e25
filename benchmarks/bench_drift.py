"""`drift`: `fit_drift` on 10^7 synthetic lab-like samples (10^6 with --quick) vs `np.polyfit(deg=1)`.

Data: polls every 0.1 s (±10 % jitter), true drift +100 ppm, delays uniform 50–200 µs with 1 % spikes
to 1–50 ms, offset error +U·delay/2 with U uniform in [0, 1] (the lab's late-reading server).
Wall time is measured without tracemalloc (one warm-up fit on 1000 samples first, so scipy's import
is not counted): the row is the first call, the second call is in details (on this VM the first call
of a 10^7 fit is ~2x slower: page faults of fresh buffers). Peak memory comes from a third run under
tracemalloc (it sees numpy buffers), as the peak above what was allocated before the call.
The peer's time includes turning t_ns into float seconds.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchResult, mono_s
from timekit.analysis.drift import fit_drift

TRUE_DRIFT_PPM = 100.0
POLL_S = 0.1
T0_NS = 1_700_000_000 * 1_000_000_000
SEED = 20_240_601


def _data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n samples: t_ns int64, offset_s, delay_s, half_width_s (float64 arrays)."""
    rng = np.random.default_rng(SEED)
    step_ns = np.round(rng.uniform(0.9, 1.1, n) * POLL_S * 1e9).astype(np.int64)
    t = T0_NS + np.cumsum(step_ns)
    d = rng.uniform(50e-6, 200e-6, n)
    spike = rng.random(n) < 0.01
    d[spike] = rng.uniform(1e-3, 50e-3, int(spike.sum()))
    o = 0.25 - TRUE_DRIFT_PPM * 1e-6 * ((t - T0_NS) / 1e9) + rng.uniform(0.0, 1.0, n) * d / 2
    return t, o, d, d / 2 + 5e-6


def _polyfit_drift(t: np.ndarray, o: np.ndarray) -> float:
    """The peer: ordinary least squares through every sample, drift = −slope in ppm."""
    x = (t - t[0]).astype(np.float64) / 1e9
    return float(-np.polyfit(x, o, 1)[0] * 1e6)


def _measure(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, first-call wall s, second-call wall s, peak MB above the pre-call allocation).

    Timed plain twice (the first call pays the page faults of fresh buffers, as a CLI run would),
    then once more under tracemalloc for the memory figure.
    """
    walls = []
    for _ in range(2):
        gc.collect()
        t0 = mono_s()
        out = fn()
        walls.append(mono_s() - t0)
        del out
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, walls[0], walls[1], peak / 1e6


def _one(res: BenchResult, n: int) -> None:
    t, o, d, hw = _data(n)
    fit, tk_s, tk_warm_s, tk_mb = _measure(lambda: fit_drift(t, o, d, hw))
    pf, pf_s, pf_warm_s, pf_mb = _measure(lambda: _polyfit_drift(t, o))
    label = f"1e{round(np.log10(n))}"
    res.details[label] = {
        "n": n, "timekit_s": tk_s, "polyfit_s": pf_s, "timekit_second_call_s": tk_warm_s,
        "polyfit_second_call_s": pf_warm_s, "timekit_peak_mb": tk_mb, "polyfit_peak_mb": pf_mb,
        "input_mb": (t.nbytes + o.nbytes + d.nbytes + hw.nbytes) / 1e6,
        "truth_drift_ppm": TRUE_DRIFT_PPM, "timekit_drift_ppm": fit.drift_ppm,
        "timekit_ci95_ppm": fit.drift_ci95_ppm, "timekit_error_ppm": fit.drift_ppm - TRUE_DRIFT_PPM,
        "polyfit_drift_ppm": pf, "polyfit_error_ppm": pf - TRUE_DRIFT_PPM, "status": fit.status,
        "n_used": fit.n_used, "n_delay_spikes": fit.n_delay_spikes, "n_halvings": fit.n_halvings,
        "runs_z": fit.runs_z, "rho_lag1": fit.rho_lag1, "span_s": fit.span_s,
    }
    res.row(f"fit wall time, {label} samples", "s", tk_s, "np.polyfit", pf_s, "first call")
    res.row(f"peak memory above input, {label}", "MB", tk_mb, "np.polyfit", pf_mb, "tracemalloc")
    res.row(f"|drift error|, {label}", "ppm", abs(fit.drift_ppm - TRUE_DRIFT_PPM), "np.polyfit",
            abs(pf - TRUE_DRIFT_PPM), f"truth {TRUE_DRIFT_PPM:+g} ppm, 1 % delay spikes")


def run(quick: bool, workdir: Path) -> BenchResult:
    """Fit 10^6 samples (quick) or 10^6 and 10^7 samples; time, memory and accuracy vs np.polyfit."""
    res = BenchResult("drift")
    t, o, d, hw = _data(1000)
    fit_drift(t, o, d, hw)  # warm-up: scipy.special import and first-touch costs
    for n in ([1_000_000] if quick else [1_000_000, 10_000_000]):
        _one(res, n)
    res.notes.append("timekit: spike filter + step scan + Huber IRLS + runs test + CI; "
                     "polyfit: plain OLS, no CI, no robustness")
    return res
