"""Clock stability from one reference's offsets: Allan, modified Allan and time deviation with
confidence intervals, and the time error the stability lets the clock make while it runs alone.

Input: one regime of one reference (no step inside: `drift.fit_drift` finds them) as local instants
(int ns) and offsets (reference − local, s). The offsets are phase data x(t) of this clock against the
reference, measurement noise included: at short τ that noise dominates (white phase noise, ADEV ∝
1/τ), at longer τ the oscillator does (flicker and random-walk frequency noise, ADEV flat or ∝ √τ).

1. `phase_grid`: deviations need equally spaced phase. Each sample is put on the nearest slot of a
   grid of step τ0 (the median spacing, or the burst period when replies come in bursts; of a slot's
   samples the lowest-delay one, as NTP's clock filter), the line through the chosen samples (the mean
   frequency, which no deviation sees) is taken out, and empty slots (lost replies) are filled by
   linear interpolation, at most MAX_GAP_FRACTION of them (more: the series is `irregular`).
2. `deviations`: ADEV (overlapping), MDEV and TDEV at octave τ with allantools, and their confidence
   intervals the way Stable32 gives them: the noise type at each τ from the lag-1 autocorrelation
   (Riley's method), Greenhall's equivalent degrees of freedom, and the chi-square interval.
3. `stability_bound`: what the interval's growth may lean on (`interval.server_bound`): the upper
   `ci` bound of the overlapping ADEV at each octave τ, computed in numpy (`oadev`, equal to
   allantools; `check` must not pay allantools' 0.5 s import), with a noise-free lower bound of the
   degrees of freedom, and a time error bound `sigmas`·τ·σ_y⁺(τ) floored at `floor_ppm`·τ.
   Beyond the longest τ measured the bound is extrapolated as random-walk frequency noise (∝ √τ),
   the steepest common oscillator noise; below the shortest, as white phase noise (τ·σ_y constant).

Units: τ in s, deviations of fractional frequency (dimensionless, 1e-6 = 1 ppm), TDEV in s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from timekit.units import NS_PER_S, PPM

GRID_TOLERANCE = 0.25  # a sample further than a quarter of τ0 from its slot is off the grid
MAX_GAP_FRACTION = 0.25  # more empty slots than this: irregular, no stability
MIN_GRID_POINTS = 16  # below this, not even one octave with several terms
BURST_GAP_RATIO = 4.0  # a spacing this many times the median spacing starts a new burst
STABILITY_CI = 0.95  # the confidence of the bounds timekit leans on and reports
STABILITY_SIGMAS = 3.0  # the time error bound: 3 × τ·σ_y⁺(τ) (99.7 % of a normal error)
STABILITY_FLOOR_PPM = 1.0  # chrony's maxclockerror: no clock is trusted to hold its rate better
MAX_DEVIATION_POINTS = 40  # octaves: 2^40 τ0 is beyond any store


@dataclass(frozen=True, eq=False)
class PhaseGrid:
    """Residual phase on an even grid: `x_s[k]` at `t0_ns` + k·`tau0_s`, the mean frequency taken out."""

    status: str  # 'ok' | 'too_few' | 'irregular'
    reason: str
    tau0_s: float = math.nan
    x_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    t0_ns: int = 0
    n_samples: int = 0  # samples given
    n_used: int = 0  # samples on the grid (one per slot)
    n_filled: int = 0  # empty slots filled by interpolation
    frequency_ppm: float = math.nan  # the line taken out: d(offset)/dt, ppm (−drift)

    @property
    def span_s(self) -> float:
        return (len(self.x_s) - 1) * self.tau0_s if len(self.x_s) else 0.0


def _grid_step_s(t_s: np.ndarray) -> float:
    """τ0: the median spacing, or the median spacing between burst starts when replies come in bursts
    (a 4-reply burst a minute: 60 s, not 2 s); then refined by least squares over the whole series,
    each gap counted as a whole number of steps, so that the median's error does not walk the samples
    off a long grid."""
    gaps = np.diff(t_s)
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return math.nan
    heads = t_s
    step = float(np.median(gaps))
    starts = np.flatnonzero(np.diff(t_s) > BURST_GAP_RATIO * step) + 1
    if starts.size >= 2 and starts.size * 3 < len(t_s):  # most samples sit inside bursts
        heads = np.concatenate(([t_s[0]], t_s[starts]))
        step = float(np.median(np.diff(heads)))
    # each gap as a whole number of steps (a lost reply: two), then the step that fits them all
    k = np.concatenate(([0], np.cumsum(np.maximum(np.rint(np.diff(heads) / step), 0))))
    if k[-1] < 1:
        return step
    return float(np.polyfit(k, heads, 1)[0])


def phase_grid(t_ns: np.ndarray, offset_s: np.ndarray, delay_s: np.ndarray | None = None) -> PhaseGrid:
    """One regime's offsets (time order) on an even grid, the mean frequency removed (see the module)."""
    n = len(t_ns)
    if n < MIN_GRID_POINTS:
        return PhaseGrid("too_few", f"{n} samples (need {MIN_GRID_POINTS})", n_samples=n)
    t_s = (np.asarray(t_ns, dtype=np.int64) - int(t_ns[0])) / NS_PER_S
    off = np.asarray(offset_s, dtype=np.float64)
    tau0 = _grid_step_s(t_s)
    if not math.isfinite(tau0) or tau0 <= 0:
        return PhaseGrid("too_few", "all samples at one instant", n_samples=n)
    pos = t_s / tau0
    slot = np.rint(pos).astype(np.int64)
    on = np.abs(pos - slot) <= GRID_TOLERANCE
    k = int(slot[-1]) + 1
    # one sample per slot: the lowest delay (NTP's clock filter), else the first
    order = np.lexsort((np.asarray(delay_s, dtype=np.float64) if delay_s is not None else np.arange(n), slot))
    order = order[on[order]]
    first = np.ones(order.size, dtype=bool)
    first[1:] = slot[order][1:] != slot[order][:-1]
    chosen = order[first]
    if chosen.size < MIN_GRID_POINTS:
        return PhaseGrid("too_few", f"{chosen.size} samples on a {tau0:.6g} s grid (need {MIN_GRID_POINTS})",
                         tau0_s=tau0, n_samples=n)
    filled = k - chosen.size
    if filled > MAX_GAP_FRACTION * k:
        return PhaseGrid("irregular", f"{filled} of {k} slots of the {tau0:.6g} s grid are empty (over "
                         f"{MAX_GAP_FRACTION:.0%})", tau0_s=tau0, n_samples=n, n_used=int(chosen.size))
    slope, icpt = np.polyfit(t_s[chosen], off[chosen], 1)  # the mean frequency, of the samples used
    resid = off[chosen] - (slope * t_s[chosen] + icpt)
    x = np.interp(np.arange(k, dtype=np.float64), slot[chosen].astype(np.float64), resid)
    return PhaseGrid("ok", f"{chosen.size} samples on a {tau0:.6g} s grid, {filled} gap(s) filled", tau0, x,
                     int(t_ns[0]), n, int(chosen.size), filled, float(slope) / PPM)


def octave_factors(n_points: int) -> np.ndarray:
    """Averaging factors m = 1, 2, 4, ... with at least 4m + 1 points (so ≥ 2m + 1 overlapping terms)."""
    out: list[int] = []
    m = 1
    while 4 * m + 1 <= n_points and len(out) < MAX_DEVIATION_POINTS:
        out.append(m)
        m *= 2
    return np.asarray(out, dtype=np.int64)


def oadev(x_s: np.ndarray, tau0_s: float, factors: np.ndarray) -> np.ndarray:
    """Overlapping Allan deviation of phase `x_s` (s, step `tau0_s`) at τ = m·τ0 for each m in `factors`:
    sqrt(mean((x[i+2m] − 2x[i+m] + x[i])²) / (2τ²)). Equal to allantools.oadev (a test holds it)."""
    out = np.empty(len(factors))
    for j, m in enumerate(factors):
        m = int(m)
        d = x_s[2 * m:] - 2.0 * x_s[m:-m] + x_s[:-2 * m]
        out[j] = math.sqrt(float(np.mean(d * d)) / (2.0 * (m * tau0_s) ** 2))
    return out


def tdev_numpy(x_s: np.ndarray, tau0_s: float, factors: np.ndarray) -> np.ndarray:
    """Time deviation of phase `x_s` (s) at τ = m·τ0, seconds: τ/√3 · MDEV(τ), MDEV from the m-averaged
    second differences (cumulative sums: O(n) per τ). Equal to allantools.tdev (a test holds it)."""
    c = np.concatenate(([0.0], np.cumsum(x_s)))
    out = np.empty(len(factors))
    for j, m in enumerate(factors):
        m = int(m)
        n_terms = len(x_s) - 3 * m + 1
        if n_terms < 1:
            out[j] = math.nan
            continue
        i = np.arange(n_terms)
        s = (c[i + 3 * m] - c[i + 2 * m]) - 2.0 * (c[i + 2 * m] - c[i + m]) + (c[i + m] - c[i])
        mvar = float(np.mean(s * s)) / (2.0 * m * m * (m * tau0_s) ** 2)
        out[j] = m * tau0_s * math.sqrt(mvar / 3.0)
    return out


def chi2_lower_quantile(p: float, df: float) -> float:
    """The p-quantile of chi-square with `df` degrees of freedom, pure Python (no scipy import): exact
    for df = 1 and 2, Wilson–Hilferty above (within 1 % at df ≥ 3 for the tails used here)."""
    if df <= 1.0:
        z = NormalDist().inv_cdf(0.5 + p / 2)
        return z * z
    if df <= 2.0:
        return -2.0 * math.log(1.0 - p)
    z = NormalDist().inv_cdf(p)
    c = 2.0 / (9.0 * df)
    return df * max(1.0 - c + z * math.sqrt(c), 0.0) ** 3


def conservative_edf(n_points: int, m: int) -> float:
    """Degrees of freedom of an overlapping ADEV at factor m that every power-law noise exceeds:
    half the non-overlapping second differences, at least 1 (Greenhall's EDF for random-walk
    frequency noise, the lowest, stays above it; a test checks α = −2..2 against allantools)."""
    return max(1.0, ((n_points - 1) // m - 1) / 2.0)


@dataclass(frozen=True, eq=False)
class StabilityBound:
    """What this clock's stability lets it do alone: ADEV's upper `ci` bound at octave τ (from
    `stability_bound`), and from it the time error bound after running `age_s` on the drift estimate."""

    tau_s: np.ndarray
    adev_upper: np.ndarray  # fractional frequency, upper `ci` bound at each tau_s
    adev: np.ndarray | None = None  # the overlapping ADEV itself at each tau_s
    tdev_s: np.ndarray | None = None  # the time deviation at each tau_s, s (NaN: too few points)
    ci: float = STABILITY_CI
    sigmas: float = STABILITY_SIGMAS
    floor_ppm: float = STABILITY_FLOOR_PPM

    def adev_upper_at(self, tau_s: np.ndarray) -> np.ndarray:
        """σ_y⁺(τ): log-log interpolation, extrapolated ∝ √τ beyond the longest τ, ∝ 1/τ below the
        shortest."""
        tau = np.maximum(np.asarray(tau_s, dtype=np.float64), 1e-9)
        lt, ls = np.log(self.tau_s), np.log(self.adev_upper)
        inside = np.exp(np.interp(np.log(tau), lt, ls))
        above = self.adev_upper[-1] * np.sqrt(tau / self.tau_s[-1])
        below = self.adev_upper[0] * self.tau_s[0] / tau
        out: np.ndarray = np.where(tau > self.tau_s[-1], above, np.where(tau < self.tau_s[0], below, inside))
        return out

    def time_error_s(self, age_s: np.ndarray) -> np.ndarray:
        """The time error (s) the clock may make in `age_s` beyond its estimated drift:
        max(floor·age, sigmas·E(age)), E(age) = max(age·σ_y⁺(age), τ_j·σ_y⁺(τ_j) for every τ_j ≤ age):
        never less for a longer run (a white-phase stretch, where τ·σ_y falls, must not let an older
        sample's bound end up narrower than a newer one's)."""
        age = np.maximum(np.asarray(age_s, dtype=np.float64), 0.0)
        at_grid = np.maximum.accumulate(self.tau_s * self.adev_upper)
        j = np.searchsorted(self.tau_s, age, side="right") - 1  # the largest τ_j <= age (-1: none)
        before = np.where(j >= 0, at_grid[np.maximum(j, 0)], 0.0)
        envelope = np.maximum(age * self.adev_upper_at(age), before)
        out: np.ndarray = np.maximum(self.floor_ppm * PPM * age, self.sigmas * envelope)
        return out

    def growth_ppm_at(self, age_s: float) -> float:
        """The bound's mean growth rate over `age_s`, ppm (what it adds per second of age)."""
        if age_s <= 0:
            return self.floor_ppm
        return float(self.time_error_s(np.array([age_s]))[0]) / age_s / PPM


def stability_bound(grid: PhaseGrid, *, ci: float = STABILITY_CI, sigmas: float = STABILITY_SIGMAS,
                    floor_ppm: float = STABILITY_FLOOR_PPM) -> StabilityBound | None:
    """The bound the interval's growth may lean on, from `grid` (None unless it is 'ok' with an octave)."""
    if grid.status != "ok":
        return None
    factors = octave_factors(len(grid.x_s))
    if factors.size == 0:
        return None
    dev = oadev(grid.x_s, grid.tau0_s, factors)
    upper = np.empty(len(factors))
    for j, m in enumerate(factors):
        edf = conservative_edf(len(grid.x_s), int(m))
        upper[j] = dev[j] * math.sqrt(edf / max(chi2_lower_quantile((1 - ci) / 2, edf), 1e-12))
    if not np.all(np.isfinite(upper)) or np.any(upper <= 0):
        upper = np.maximum(np.nan_to_num(upper, nan=0.0, posinf=1.0), 1e-15)
    return StabilityBound(factors * grid.tau0_s, upper, dev, tdev_numpy(grid.x_s, grid.tau0_s, factors), ci,
                          sigmas, floor_ppm)


@dataclass(frozen=True, eq=False)
class Deviations:
    """ADEV (overlapping), MDEV, TDEV at octave τ with `ci` intervals (lo, hi columns), and the noise
    type found at each τ (α: 2 white phase, 1 flicker phase, 0 white frequency, −1 flicker
    frequency, −2 random-walk frequency)."""

    tau_s: np.ndarray
    n_terms: np.ndarray
    adev: np.ndarray
    adev_ci: np.ndarray  # shape (n, 2)
    mdev: np.ndarray
    mdev_ci: np.ndarray
    tdev: np.ndarray  # s
    tdev_ci: np.ndarray
    alpha: np.ndarray  # int, the noise identified (NaN-free: the nearest identifiable τ's)
    ci: float = STABILITY_CI


NOISE_NAMES = {2: "white phase", 1: "flicker phase", 0: "white frequency", -1: "flicker frequency",
               -2: "random-walk frequency"}
MIN_NOISE_ID_POINTS = 32  # Riley's lag-1 method needs about 30 points after decimation


def deviations(grid: PhaseGrid, ci: float = STABILITY_CI) -> Deviations | None:
    """ADEV/MDEV/TDEV with confidence intervals from allantools (None unless `grid` is 'ok')."""
    if grid.status != "ok":
        return None
    import allantools as at  # 0.5 s of imports (scipy.stats): only where stability is asked for

    factors = octave_factors(len(grid.x_s))
    if factors.size == 0:
        return None
    rate = 1.0 / grid.tau0_s
    taus = factors * grid.tau0_s
    x = grid.x_s
    t_a, adev, _, ns = at.oadev(x, rate=rate, data_type="phase", taus=taus)
    t_m, mdev, _, _ = at.mdev(x, rate=rate, data_type="phase", taus=taus)
    t_t, tdev, _, _ = at.tdev(x, rate=rate, data_type="phase", taus=taus)
    if not (len(t_a) == len(t_m) == len(t_t) == len(factors)):  # allantools drops τ it cannot compute
        keep = np.isin(np.round(taus / grid.tau0_s), np.round(np.asarray(t_a) / grid.tau0_s))
        factors, taus = factors[keep], taus[keep]
        n = min(len(t_a), len(t_m), len(t_t), len(factors))
        factors, taus, adev, mdev, tdev, ns = factors[:n], taus[:n], adev[:n], mdev[:n], tdev[:n], ns[:n]
    alphas = np.empty(len(factors), dtype=np.int64)
    last = 0  # white frequency until a τ can be identified
    for j, m in enumerate(factors):
        if len(x) // int(m) >= MIN_NOISE_ID_POINTS:
            last = int(at.autocorr_noise_id(x, int(m), data_type="phase", dmin=0, dmax=2)[0])
        alphas[j] = max(-2, min(2, last))
    adev_ci, mdev_ci, tdev_ci = (np.empty((len(factors), 2)) for _ in range(3))
    for j, m in enumerate(factors):
        a = int(alphas[j])
        edf_o = _edf(at, a, int(m), len(x), modified=False)
        edf_m = _edf(at, a, int(m), len(x), modified=True)
        adev_ci[j] = at.confidence_interval(adev[j], edf_o, ci)
        mdev_ci[j] = at.confidence_interval(mdev[j], edf_m, ci)
        tdev_ci[j] = at.confidence_interval(tdev[j], edf_m, ci)
    return Deviations(np.asarray(taus, dtype=np.float64), np.asarray(ns, dtype=np.int64),
                      np.asarray(adev), adev_ci, np.asarray(mdev), mdev_ci, np.asarray(tdev), tdev_ci,
                      alphas, ci)


def _edf(at: object, alpha: int, m: int, n: int, *, modified: bool) -> float:
    """Greenhall's EDF (overlapping), or the conservative count where his algorithm has no answer."""
    try:
        edf = float(at.edf_greenhall(alpha=alpha, d=2, m=m, N=n, overlapping=True,  # type: ignore[attr-defined]
                                     modified=modified))
    except (ValueError, ZeroDivisionError, IndexError, NotImplementedError):
        edf = math.nan
    return edf if math.isfinite(edf) and edf > 0 else conservative_edf(n, m)
