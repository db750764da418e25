"""Drift (ppm) of the local clock against one reference, with an honest 95 % interval.

Input: one server's stored samples in time order: `t_ns` (local CLOCK_REALTIME at reply, int ns),
`offset_s` (reference − local), `delay_s` (round trip) and optionally `half_width_s` (root distance,
the NTP error bound; default delay/2). Output: a frozen `DriftFit`. Signs: offset = ref − local and
drift_ppm = −d(offset)/dt·1e6 (positive: the local clock gains). The fit extrapolates as

    offset(t) ≈ offset_s − drift_ppm·1e-6·(t − t_end_ns)/1e9

Pipeline (each stage counts what it drops; every sample ends in exactly one count):

1. Delay spikes: delay > median + max(DELAY_SPIKE_K·σ_MAD, (DELAY_SPIKE_RATIO−1)·median), and
   above DELAY_SPIKE_FLOOR_S, are dropped (`n_delay_spikes`). Their error can be up to half their delay.
2. Steps: `steps.detect_steps` on the rest, using the NTP bound (|Δoffset| ≤ hw_a + hw_b +
   max_rate·Δt). Only the newest level is fitted, never across a step (`n_before_step`); lone
   inconsistent samples and unconfirmed levels are dropped (`n_outliers`).
3. Robust line: Huber IRLS with σ_i = half-width, so low-delay samples (which carry the truth)
   weigh most and a wild sample cannot pull the line (`regression.huber_line`).
4. Model check: runs test on residual signs (chrony's test, on at most 32 block means for long
   series). Too few runs (z < −RUNS_Z_CRITICAL) while some residual is outside its own error bar
   (half-width: structure inside the bars is the path's delay-dependent bias, which NTP's bound
   already covers) means a constant drift does not describe the window:
   the oldest half is dropped and the fit repeated (`n_trimmed_old`, `n_halvings`), down to
   MIN_SAMPLES_AFTER_TRIM samples; if it still fails the status is 'model_misfit'.
5. Interval: the slope's standard error (HC1 sandwich on the final Huber weights, which does not
   lean on a MAD scale that two-level lab errors collapse) is inflated for lag-1 autocorrelation of
   the standardised residuals (AR(1): ×sqrt((1+ρ)/(1−ρ)), Student t on n_eff − 2 degrees of freedom). Then a
   delay-bias term is added (linearly: it is systematic, not noise; on the lab, in quadrature missed
   the truth in 2 of 6 short bursts): an offset error that is a fraction of delay/2 (path
   asymmetry, or the lab server reading its clock late by a wake-up latency) turns any trend of the
   delay into a slope the residuals cannot show; its worst case is the fitted slope of delay/2 over
   the window (`delay_bias_ppm`). CI95 = drift ± (t·se + delay_bias), then widened to contain
   `drift_bound_ppm`: every slope for which one line passes through all the window's bars
   (± half-width), which holds the truth whenever the bars are honest (NTP's guarantee).
6. Point estimate: when that bound is narrower than the statistical interval, the middle of the
   bound (and the middle of the offsets it allows at the newest sample): for errors bounded by
   the bars it converges as 1/n, and a bias regime inside the bars cannot tilt it; otherwise the
   Huber slope.

Complexity: O(n) time and memory. All per-sample work is vectorised numpy: a constant number of
passes per Huber iteration (at most 8), medians over at most 10⁶ strided values, and the halvings
cost at most 2n in total (geometric). Python loops run only over rare events (inconsistent sample
pairs in the step scan) and over at most log2(n) halvings. 10⁷ samples take a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from timekit.analysis.regression import (
    MAD_TO_SIGMA,
    MIN_SAMPLES_FOR_REGRESSION,
    SCALE_SUBSAMPLE,
    effective_n,
    feasible_slope_range,
    huber_line,
    lag1_autocorrelation,
    runs_test,
    sandwich_slope_se,
    t_quantile,
    variance_inflation,
)
from timekit.analysis.steps import DEFAULT_CONFIRM, DEFAULT_MAX_RATE_PPM, Step, detect_steps
from timekit.analysis.thresholds import DEFAULT_THRESHOLDS, DRIFT_GATE_FRACTION, ci_half_ppm
from timekit.units import NS_PER_S, PPM
from timekit.vocabulary import FitStatus

CI_LEVEL = 0.95
DELAY_SPIKE_K = 10.0  # spike: more than 10 MAD-sigmas above the median delay...
DELAY_SPIKE_RATIO = 5.0  # ...and more than 5x the median delay...
DELAY_SPIKE_FLOOR_S = 1e-3  # ...and above 1 ms (loopback wake-ups reach a few hundred µs)
SIGMA_FLOOR_S = 1e-9  # a zero half-width would get infinite weight
RUNS_Z_CRITICAL = 1.645  # one-sided 5 % (chrony uses a 10 % region)
MIN_SAMPLES_AFTER_TRIM = 16  # never halve the window below this many samples
MAX_HALVINGS = 40  # hard bound on the trimming loop (2**40 samples)


@dataclass(frozen=True)
class DriftFit:
    """Drift estimate for one reference.

    status: 'ok' | 'insufficient_samples' (estimates None) | 'model_misfit' (the runs test still fails
    on the smallest window; estimates are from that window and only indicative). `reason` says why.
    drift_ppm: positive = local clock gains. drift_ci95_ppm: (lo, hi) ppm; drift_se_ppm: statistical
    standard error after the autocorrelation correction (the CI also holds the delay-bias term).
    offset_s / offset_se_s: fitted offset at t_end_ns (the newest sample given) and its standard error.
    t_start_ns: oldest sample in the fitted window; span_s = (t_end_ns − t_start_ns)/1e9.
    n_used: samples in the fitted window (for 'insufficient_samples': the usable ones, too few).
    n_samples = n_before_step + n_delay_spikes + n_outliers + n_trimmed_old + n_used.
    step_scan_status: `steps.StepScan.status` ('inconsistent_half_widths' means steps were not assessed).
    residual_std_s: unweighted rms residual of the window (n−2 dof; Huber-downweighted samples count).
    runs_z: runs-test z of the final window (None if too few samples to test). rho_lag1: lag-1
    autocorrelation of standardised residuals; n_effective: n_used·(1−ρ)/(1+ρ) with ρ clipped to [0, 0.95].
    """

    status: FitStatus
    reason: str
    drift_ppm: float | None
    drift_ci95_ppm: tuple[float, float] | None
    drift_se_ppm: float | None
    offset_s: float | None
    offset_se_s: float | None
    t_start_ns: int | None
    t_end_ns: int | None
    n_samples: int
    n_used: int
    span_s: float | None
    residual_std_s: float | None
    steps: tuple[Step, ...]
    step_scan_status: str | None
    n_before_step: int
    n_delay_spikes: int
    n_outliers: int
    n_trimmed_old: int
    n_halvings: int
    runs_z: float | None
    rho_lag1: float | None
    n_effective: float | None
    delay_bias_ppm: float | None
    # every drift for which one line passes through all the window's error bars (root distance):
    # certain if the bars are honest; the 95 % interval is widened to contain it (None: no line fits)
    drift_bound_ppm: tuple[float, float] | None = None


def delay_spike_threshold_s(delay_s: np.ndarray) -> float:
    """Delay (s) above which a sample is a spike: robust to half the samples being spikes. O(n)."""
    d = np.asarray(delay_s, dtype=np.float64)
    if d.size == 0:
        raise ValueError("delay_spike_threshold_s of no delays")
    sub = d[:: max(1, d.size // SCALE_SUBSAMPLE)]
    med = float(np.median(sub))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(sub - med)))
    return max(med + max(DELAY_SPIKE_K * sigma, (DELAY_SPIKE_RATIO - 1.0) * med), DELAY_SPIKE_FLOOR_S)


def _validate(t_ns: np.ndarray, offset_s: np.ndarray, delay_s: np.ndarray, half_width_s: np.ndarray | None,
              max_rate_ppm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(t_ns)
    o = np.asarray(offset_s, dtype=np.float64)
    d = np.asarray(delay_s, dtype=np.float64)
    hw = None if half_width_s is None else np.asarray(half_width_s, dtype=np.float64)
    arrays = {"t_ns": t, "offset_s": o, "delay_s": d} | ({} if hw is None else {"half_width_s": hw})
    for name, a in arrays.items():
        if a.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    sizes = {a.size for a in arrays.values()}
    if len(sizes) != 1:
        raise ValueError("inputs differ in length: " + ", ".join(f"{k}={a.size}" for k, a in arrays.items()))
    if t.size and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"t_ns must be integer nanoseconds, got dtype {t.dtype}")
    t = t.astype(np.int64, copy=False)
    if not (math.isfinite(max_rate_ppm) and max_rate_ppm >= 0):
        raise ValueError(f"max_rate_ppm must be finite and >= 0 ppm, got {max_rate_ppm}")
    if not np.all(np.isfinite(o)):
        raise ValueError("offset_s contains NaN or infinite values (pass only ok samples)")
    if not np.all(np.isfinite(d)):
        raise ValueError("delay_s contains NaN or infinite values (pass only ok samples)")
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError("t_ns must be non-decreasing (sort samples by time first)")
    d = np.maximum(d, 0.0)  # NTP can report a slightly negative delay; it bounds nothing below 0
    if hw is None:
        hw = d / 2.0
    elif not (np.all(np.isfinite(hw)) and np.all(hw >= 0)):
        raise ValueError("half_width_s must be finite and >= 0 seconds")
    return t, o, d, hw


def _no_fit(reason: str, n: int, **counts: object) -> DriftFit:
    base: dict[str, object] = dict(
        status="insufficient_samples", reason=reason, drift_ppm=None, drift_ci95_ppm=None,
        drift_se_ppm=None, offset_s=None, offset_se_s=None, t_start_ns=None, t_end_ns=None,
        n_samples=n, n_used=0, span_s=None, residual_std_s=None, steps=(), step_scan_status=None,
        n_before_step=0, n_delay_spikes=0, n_outliers=0, n_trimmed_old=0, n_halvings=0, runs_z=None,
        rho_lag1=None, n_effective=None, delay_bias_ppm=None)
    base.update(counts)
    return DriftFit(**base)  # type: ignore[arg-type]


def fit_drift(t_ns: np.ndarray, offset_s: np.ndarray, delay_s: np.ndarray,
              half_width_s: np.ndarray | None = None, *, max_rate_ppm: float = DEFAULT_MAX_RATE_PPM,
              confirm: int = DEFAULT_CONFIRM) -> DriftFit:
    """Drift (ppm) with a 95 % CI from one server's time-ordered samples; see the module docstring.

    Raises ValueError on malformed input (lengths, NaN, unsorted t_ns, negative half-widths or rate).
    """
    t, o, d, hw = _validate(t_ns, offset_s, delay_s, half_width_s, max_rate_ppm)
    n = int(t.size)
    if n < MIN_SAMPLES_FOR_REGRESSION:
        return _no_fit(f"{n} sample(s): a drift needs at least {MIN_SAMPLES_FOR_REGRESSION}", n, n_used=n)

    # 1. delay spikes
    spike = d > delay_spike_threshold_s(d)
    keep = np.flatnonzero(~spike)

    # 2. steps and outliers among the rest (indices mapped back to the input)
    scan = detect_steps(t[keep], o[keep], hw[keep], max_rate_ppm=max_rate_ppm, confirm=confirm)
    steps = tuple(Step(index=int(keep[s.index]), t_ns=s.t_ns, size_s=s.size_s) for s in scan.steps)
    k0 = scan.segment_start if steps else 0  # a run of outliers at the start is no step
    seg = int(keep[k0]) if steps else 0
    outlier = np.zeros(n, dtype=bool)
    outlier[keep[scan.outlier]] = True
    n_before = seg
    n_spikes = int(np.count_nonzero(spike[seg:]))
    n_outliers = int(np.count_nonzero(outlier[seg:]))
    idx = keep[k0:][~scan.outlier[k0:]]
    counts = dict(steps=steps, step_scan_status=scan.status, n_before_step=n_before,
                  n_delay_spikes=n_spikes, n_outliers=n_outliers)
    step_note = (f" since the step of {steps[-1].size_s:+.6g} s at sample {steps[-1].index}" if steps else "")
    if scan.pending_from is not None:
        step_note += f" (a possible new level from sample {int(keep[scan.pending_from])} is unconfirmed)"
    if scan.status != "ok":
        step_note += f" ({scan.reason})"
    if idx.size < MIN_SAMPLES_FOR_REGRESSION or t[idx[-1]] == t[idx[0]]:
        return _no_fit(f"{idx.size} usable sample(s){step_note} at distinct instants: a drift needs "
                       f"{MIN_SAMPLES_FOR_REGRESSION} at 2 or more instants "
                       f"({n_spikes} delay spike(s), {n_outliers} outlier(s) dropped)", n,
                       n_used=int(idx.size), **counts)

    # 3.-4. robust line; halve the window from the old end while the runs test fails
    t_end = int(t[-1])
    x = (t[idx] - t_end).astype(np.float64) / NS_PER_S  # s, <= 0
    y_ref = float(o[idx[-1]])
    y = o[idx] - y_ref  # centred for precision
    sigma = np.maximum(hw[idx], SIGMA_FLOOR_S)
    m = idx.size
    lo = 0
    halvings = 0
    status: FitStatus = "ok"
    while True:
        fit = huber_line(x[lo:], y[lo:], sigma[lo:])
        runs = runs_test(fit.residuals, fit.weights)
        # a line through every sample's own error bar fits by NTP's guarantee, whatever the signs
        # say: structure inside the bars is the delay-dependent bias of the path, not a drift change
        within_bars = bool(np.all(np.abs(fit.residuals) <= sigma[lo:]))
        if runs.z is None or runs.z >= -RUNS_Z_CRITICAL or within_bars:
            break
        new_lo = m - (m - lo) // 2
        if m - new_lo < MIN_SAMPLES_AFTER_TRIM or halvings >= MAX_HALVINGS or x[new_lo] == x[-1]:
            status = "model_misfit"
            break
        lo = new_lo
        halvings += 1

    # 5. interval
    n_used = m - lo
    z_std = fit.residuals * np.sqrt(fit.weights)
    rho = lag1_autocorrelation(z_std)
    inflation = variance_inflation(rho)
    n_eff = effective_n(n_used, rho)
    slope_se = sandwich_slope_se(x[lo:], fit) * math.sqrt(inflation)
    wdx = fit.weights * (x[lo:] - fit.x_mean)
    delay_bias = abs(float(np.dot(wdx, d[idx[lo:]])) / (2.0 * fit.sxx))  # slope of delay/2, s/s
    tq = t_quantile(0.5 + CI_LEVEL / 2.0, max(n_eff - 2.0, 1.0))
    half = tq * slope_se + delay_bias  # the bias is systematic: added, not in quadrature
    drift = -fit.slope / PPM
    ci = (drift - half / PPM, drift + half / PPM)
    feasible = feasible_slope_range(x[lo:], y[lo:], hw[idx[lo:]])
    bound = None if feasible is None else (-feasible[1] / PPM, -feasible[0] / PPM)
    offset_at_end = y_ref + fit.intercept
    if bound is not None:  # NTP's own guarantee: the truth's slope is in here when the bars are honest
        if bound[1] - bound[0] < ci[1] - ci[0] and feasible is not None:
            # the bars pin the slope tighter than the statistics: take the middle of what they allow
            # (for errors bounded by the bars this converges as 1/n, least squares as 1/sqrt(n), and
            # it cannot be tilted by a bias regime that stays inside the bars), and the middle of the
            # offsets that slope allows at the newest sample
            b_mid = (feasible[0] + feasible[1]) / 2.0
            xs, ys, hs = x[lo:], y[lo:], hw[idx[lo:]]
            a_lo, a_hi = float(np.max(ys - hs - b_mid * xs)), float(np.min(ys + hs - b_mid * xs))
            drift = -b_mid / PPM
            offset_at_end = y_ref + (a_lo + a_hi) / 2.0
        ci = (min(ci[0], bound[0], drift), max(ci[1], bound[1], drift))
    t_start = int(t[idx[lo]])
    span_s = (t_end - t_start) / NS_PER_S
    resid_std = math.sqrt(float(np.dot(fit.residuals, fit.residuals)) / (n_used - 2)) if n_used > 2 else None
    runs_txt = "runs test not applicable" if runs.z is None else f"runs z = {runs.z:.2f}"
    window_txt = (f"{n_used} samples over {span_s:.6g} s{step_note}; {runs_txt}"
                  + (f"; {halvings} halving(s) dropped the oldest {lo} samples" if halvings else ""))
    if status == "ok":
        reason = f"fitted {window_txt}"
    else:
        reason = (f"residual signs still show structure (too few runs) on the smallest window: {window_txt}; "
                  "a constant drift does not describe these data")
    return DriftFit(
        status=status, reason=reason, drift_ppm=drift,
        drift_ci95_ppm=ci, drift_se_ppm=slope_se / PPM, drift_bound_ppm=bound,
        offset_s=offset_at_end, offset_se_s=fit.intercept_se * math.sqrt(inflation),
        t_start_ns=t_start, t_end_ns=t_end, n_samples=n, n_used=n_used, span_s=span_s,
        residual_std_s=resid_std, n_trimmed_old=lo, n_halvings=halvings, runs_z=runs.z, rho_lag1=rho,
        n_effective=n_eff, delay_bias_ppm=delay_bias / PPM, **counts)  # type: ignore[arg-type]


# The widest 95 % half-width at which a fitted drift is reported as known: the gate `timekit check`
# and the Prometheus rules apply (ServerAssessment.drift_judgeable) at the default drift warning.
CANNOT_TELL_HALF_PPM = DEFAULT_THRESHOLDS.warn_drift_ppm * DRIFT_GATE_FRACTION


def reported_status(fit: DriftFit, limit_ppm: float = CANNOT_TELL_HALF_PPM) -> tuple[FitStatus, str]:
    """(status, reason) as reported to people: a fit whose 95 % interval is wider than ±`limit_ppm`
    is 'cannot_tell' (a 4-query burst's ±14,000 ppm says nothing about the clock), not 'ok'."""
    half = ci_half_ppm(fit.drift_ppm, fit.drift_ci95_ppm)
    if fit.status != "ok" or half is None or half <= limit_ppm:
        return fit.status, fit.reason
    return "cannot_tell", (f"95 % interval ±{half:.4g} ppm is wider than ±{limit_ppm:g} ppm: too few samples "
                           f"or too short a span to tell ({fit.reason})")
