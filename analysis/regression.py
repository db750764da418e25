"""Straight-line regression for clock data: weighted least squares, Huber IRLS, runs test, effective n.

The statistical building blocks of `drift.py`, in the spirit of chrony's `regress.c`:

- `weighted_line`: weighted least squares y = intercept + slope·x with standard errors. Weights are
  *relative* (w_i ∝ 1/σ_i²): the noise scale comes from the residuals, as in chrony's
  `RGR_WeightedRegression`.
- `huber_line`: iteratively reweighted least squares with Huber weights on residuals standardised by
  each sample's σ_i, so a few wild samples cannot pull the line (chrony gets robustness from a
  median-based slope search instead; Huber keeps every step O(n) and vectorised). Its standard
  errors are Huber's asymptotic ones, so wild samples do not inflate them either.
- `runs_test`: Wald–Wolfowitz runs test on residual signs. Too few runs means the residuals have
  structure the straight line does not explain (a drift change, a missed step). For long series the
  test runs on at most `RUNS_MAX_BLOCKS` block means of consecutive residuals, so that short-range
  autocorrelation of the noise (normal on real networks) does not read as model misfit.
- `lag1_autocorrelation` / `effective_n`: autocorrelated residuals carry less information than their
  count suggests; an AR(1) model gives n_eff = n·(1−ρ)/(1+ρ) and inflates variances by (1+ρ)/(1−ρ).

Complexity: every function is O(n) time and O(n) memory with a constant number of vectorised numpy
passes; robust scales use a median over at most `SCALE_SUBSAMPLE` evenly strided values
(`np.partition`, O(n)). No Python loop runs over samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np

MIN_SAMPLES_FOR_REGRESSION = 3  # two parameters plus one degree of freedom for the noise scale
HUBER_C = 1.345  # Huber tuning constant: 95 % efficiency under Gaussian noise
HUBER_MAX_ITERATIONS = 8
HUBER_TOL_SE = 0.01  # stop IRLS when the slope moves by less than 1 % of its standard error
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise
SCALE_SUBSAMPLE = 1_000_000  # robust scales from at most this many evenly strided values
RUNS_MAX_BLOCKS = 32  # runs test on at most this many block means of consecutive residuals
MIN_SAMPLES_FOR_RUNS_TEST = 10  # below this the test cannot reject anything at useful levels
RHO_MAX = 0.95  # cap on the lag-1 autocorrelation used for effective n (inflation at most 39x)


@dataclass(frozen=True, eq=False)
class LineFit:
    """y = intercept + slope·x fitted with relative weights; standard errors from the residual scale.

    `scale` is sqrt(Σ w r² / (n−2)) (dimensionless when w = 1/σ²; y units with unit weights).
    `residuals` (y units) and `weights` are the final ones, aligned with the input.
    """

    slope: float
    intercept: float
    slope_se: float
    intercept_se: float
    scale: float
    n: int
    x_mean: float  # weighted mean of x (x units)
    sxx: float  # Σ w (x − x_mean)²
    residuals: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class RunsTest:
    """Wald–Wolfowitz runs test on residual signs (zero residuals dropped).

    `z` = (runs − expected) / sd; strongly negative = too few runs = residuals have structure.
    None when it cannot be computed (fewer than `MIN_SAMPLES_FOR_RUNS_TEST` signs, or one sign only).
    `n_blocks` is the number of signs tested (block means when the series was longer).
    """

    n_runs: int
    n_pos: int
    n_neg: int
    expected_runs: float | None
    z: float | None
    n_blocks: int


def _as_1d_float(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> LineFit:
    """Weighted least-squares line through (x, y) with relative weights `w` (default 1).

    Raises ValueError for fewer than `MIN_SAMPLES_FOR_REGRESSION` points, mismatched lengths,
    non-positive or non-finite weights, or all x equal (the slope is then undefined).
    """
    xa = _as_1d_float("x", x)
    ya = _as_1d_float("y", y)
    n = xa.size
    if ya.size != n:
        raise ValueError(f"x and y differ in length ({n} vs {ya.size})")
    if n < MIN_SAMPLES_FOR_REGRESSION:
        raise ValueError(f"need at least {MIN_SAMPLES_FOR_REGRESSION} points for a line, got {n}")
    if w is None:
        wa = np.ones(n)
    else:
        wa = _as_1d_float("w", w)
        if wa.size != n:
            raise ValueError(f"w and x differ in length ({wa.size} vs {n})")
        if not (np.all(np.isfinite(wa)) and np.all(wa > 0)):
            raise ValueError("weights must be finite and > 0")
    return _wls(xa, ya, wa)


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray,
         work: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> LineFit:
    """`weighted_line` without validation (the hot path); `work` = three n-sized buffers to reuse,
    the third becomes the residuals. Fresh 80 MB arrays cost page faults at 10⁷ samples."""
    n = x.size
    dx, wdx, resid = (np.empty(n), np.empty(n), np.empty(n)) if work is None else work
    sw = float(w.sum())
    x_mean = float(np.dot(w, x)) / sw
    y_mean = float(np.dot(w, y)) / sw
    np.subtract(x, x_mean, out=dx)
    np.multiply(w, dx, out=wdx)
    sxx = float(np.dot(wdx, dx))
    if not sxx > 0.0:
        raise ValueError("all x are equal: the slope is undefined")
    slope = float(np.dot(wdx, y)) / sxx  # Σ w dx = 0, so y_mean drops out
    np.subtract(y, y_mean, out=resid)
    dx *= slope
    resid -= dx
    np.multiply(w, resid, out=wdx)
    ss = float(np.dot(wdx, resid))
    dof = n - 2
    scale = math.sqrt(ss / dof) if dof > 0 else math.nan
    slope_se = scale / math.sqrt(sxx)
    intercept = y_mean - slope * x_mean
    intercept_se = math.sqrt(scale * scale / sw + (x_mean * slope_se) ** 2)
    return LineFit(slope=slope, intercept=intercept, slope_se=slope_se, intercept_se=intercept_se,
                   scale=scale, n=n, x_mean=x_mean, sxx=sxx, residuals=resid, weights=w)


def robust_scale(z: np.ndarray) -> float:
    """MAD-based standard deviation of `z` (same units), from at most `SCALE_SUBSAMPLE` strided values."""
    za = np.asarray(z, dtype=np.float64)
    if za.size == 0:
        raise ValueError("robust_scale of an empty array")
    stride = max(1, za.size // SCALE_SUBSAMPLE)
    sub = za[::stride]
    med = float(np.median(sub))
    return MAD_TO_SIGMA * float(np.median(np.abs(sub - med)))


def huber_line(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, *, c: float = HUBER_C,
               max_iterations: int = HUBER_MAX_ITERATIONS) -> LineFit:
    """Huber M-estimate of a line, each point with its own noise scale `sigma` (y units, > 0).

    Starts from weighted least squares with w = 1/σ², then reweights by h = min(1, c·s/|r/σ|) where s
    is the MAD scale of r/σ; stops when the slope moves less than `HUBER_TOL_SE` standard errors.
    The returned weights are h/σ²; standard errors and `scale` are Huber's asymptotic ones
    (`_huber_errors`), so a wild sample does not inflate them the way it inflates Σ w r².
    """
    if not c > 0:
        raise ValueError(f"Huber constant c must be > 0, got {c}")
    sa = _as_1d_float("sigma", sigma)
    if not (np.all(np.isfinite(sa)) and np.all(sa > 0)):
        raise ValueError("sigma must be finite and > 0 (seconds)")
    xa = _as_1d_float("x", x)
    ya = _as_1d_float("y", y)
    if not (xa.size == ya.size == sa.size):
        raise ValueError(f"x, y, sigma differ in length ({xa.size}, {ya.size}, {sa.size})")
    if xa.size < MIN_SAMPLES_FOR_REGRESSION:
        raise ValueError(f"need at least {MIN_SAMPLES_FOR_REGRESSION} points for a line, got {xa.size}")
    w0 = 1.0 / (sa * sa)
    n = xa.size
    work = (np.empty(n), np.empty(n), np.empty(n))
    weight_bufs = (np.empty(n), np.empty(n))  # alternate: the current fit still refers to one of them
    fit = _wls(xa, ya, w0, work)
    reweighted = False
    for it in range(max_iterations):
        z = np.divide(fit.residuals, sa, out=weight_bufs[it % 2])
        s = robust_scale(z)
        if not s > 0.0:
            break  # more than half the residuals are equal: nothing to reweight against
        cs = c * s
        np.abs(z, out=z)
        np.maximum(z, cs, out=z)
        np.divide(cs, z, out=z)  # Huber weight min(1, c·s/|r/σ|), in place
        z *= w0
        new = _wls(xa, ya, z, work)  # overwrites fit.residuals, already used
        reweighted = True
        moved = abs(new.slope - fit.slope)
        fit = new
        if not moved > HUBER_TOL_SE * fit.slope_se:
            break
    return _huber_errors(fit, xa, sa, w0, c, work[:2]) if reweighted else fit


def _huber_errors(fit: LineFit, x: np.ndarray, sigma: np.ndarray, w0: np.ndarray, c: float,
                  scratch: tuple[np.ndarray, np.ndarray]) -> LineFit:
    """Standard errors of a Huber fit (Huber 1981, §7.6): var = K²·s²·mean(ψ²)/mean(ψ')²·(X'W₀X)⁻¹.

    u = r/(σ·s) with s the MAD scale, ψ(u) = clip(u, −c, c), ψ' = 1{|u| ≤ c}, K = 1 + (p/n)·(1−B)/B with
    B = mean ψ' and p = 2. A wild sample adds at most c² to Σψ², where it would add u² to Σ(r/σ)².
    `scratch`: two n-sized buffers it may overwrite.
    """
    n = fit.n
    u = np.divide(fit.residuals, sigma, out=scratch[0])
    s = robust_scale(u)
    if not s > 0.0:
        return fit
    u /= s
    inside = float(np.count_nonzero(np.abs(u, out=scratch[1]) <= c)) / n
    if not inside > 0.0:
        return fit
    np.clip(u, -c, c, out=u)
    a = float(np.dot(u, u)) / (n - 2)
    k = 1.0 + 2.0 / n * (1.0 - inside) / inside
    var_unit = (k * s / inside) ** 2 * a  # variance of an observation with σ = 1, in (r/σ)² units
    sw0 = float(w0.sum())
    x0 = float(np.dot(w0, x)) / sw0
    dx = np.subtract(x, x0, out=scratch[1])
    sxx0 = float(np.dot(np.multiply(w0, dx, out=scratch[0]), dx))
    slope_se = math.sqrt(var_unit / sxx0)
    intercept_se = math.sqrt(var_unit / sw0 + (x0 * slope_se) ** 2)
    return replace(fit, slope_se=slope_se, intercept_se=intercept_se, scale=k * s * math.sqrt(a) / inside)


def runs_test(residuals: np.ndarray, weights: np.ndarray | None = None, *,
              max_blocks: int = RUNS_MAX_BLOCKS) -> RunsTest:
    """Runs test on the signs of `residuals` in order; long series are cut into `max_blocks` blocks.

    A block's sign is that of its weighted mean residual (weights default 1). Expected runs
    μ = 2·n₊·n₋/N + 1, variance (μ−1)(μ−2)/(N−1) (Wald–Wolfowitz, normal approximation).
    """
    r = _as_1d_float("residuals", residuals)
    if max_blocks < 2:
        raise ValueError(f"max_blocks must be >= 2, got {max_blocks}")
    if r.size > max_blocks:
        starts = np.linspace(0, r.size, max_blocks + 1).astype(np.int64)[:-1]
        w = np.ones(r.size) if weights is None else _as_1d_float("weights", weights)
        if w.size != r.size:
            raise ValueError(f"weights and residuals differ in length ({w.size} vs {r.size})")
        r = np.add.reduceat(w * r, starts) / np.add.reduceat(w, starts)
    signs = np.sign(r)
    signs = signs[signs != 0]
    n_tot = int(signs.size)
    n_pos = int(np.count_nonzero(signs > 0))
    n_neg = n_tot - n_pos
    n_runs = 1 + int(np.count_nonzero(signs[1:] != signs[:-1])) if n_tot else 0
    if n_tot < MIN_SAMPLES_FOR_RUNS_TEST or n_pos == 0 or n_neg == 0:
        return RunsTest(n_runs, n_pos, n_neg, None, None, n_tot)
    mu = 2.0 * n_pos * n_neg / n_tot + 1.0
    var = (mu - 1.0) * (mu - 2.0) / (n_tot - 1)
    z = (n_runs - mu) / math.sqrt(var) if var > 0 else None
    return RunsTest(n_runs, n_pos, n_neg, mu, z, n_tot)


def lag1_autocorrelation(z: np.ndarray) -> float | None:
    """Lag-1 autocorrelation Σ c_i c_{i+1} / Σ c_i² of c = z − mean(z) (dimensionless); None if undefined."""
    za = _as_1d_float("z", z)
    if za.size < MIN_SAMPLES_FOR_REGRESSION:
        return None
    zc = za - float(za.mean())
    den = float(np.dot(zc, zc))
    if not den > 0.0:
        return None
    return float(np.dot(zc[1:], zc[:-1])) / den


def variance_inflation(rho: float | None) -> float:
    """AR(1) variance inflation (1+ρ)/(1−ρ) with ρ clipped to [0, RHO_MAX] (never deflates)."""
    r = 0.0 if rho is None else min(max(rho, 0.0), RHO_MAX)
    return (1.0 + r) / (1.0 - r)


def effective_n(n: int, rho: float | None) -> float:
    """Number of independent samples worth of information in n AR(1) samples: n·(1−ρ)/(1+ρ)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n / variance_inflation(rho)


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile (dimensionless) for probability p and (possibly fractional) df > 0.

    G. W. Hill, "Algorithm 396: Student's t-quantiles", CACM 13(10), 1970, for df >= 3 (within
    1e-5 relative of scipy; a test holds it); exact closed forms at df = 1 and 2, and for a
    fractional df below 3 the value at floor(df), which is wider (conservative: |t| falls with
    df). Pure Python, so a drift fit (and `timekit check`) does not pay scipy's ~0.2 s import.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    sign = 1.0 if p > 0.5 else -1.0
    tail2 = 2.0 * min(p, 1.0 - p)  # two-tailed probability
    n = float(df) if df >= 3.0 else float(math.floor(df))
    if n == 1.0:
        return sign * math.cos(tail2 * math.pi / 2) / math.sin(tail2 * math.pi / 2)
    if n == 2.0:
        return sign * math.sqrt(2.0 / (tail2 * (2.0 - tail2)) - 2.0)
    if n < 1.0:
        from scipy.special import stdtrit  # rare: fewer than one effective degree of freedom

        return float(stdtrit(n, p))
    a = 1.0 / (n - 0.5)
    b = 48.0 / (a * a)
    c = ((20700.0 * a / b - 98.0) * a - 16.0) * a + 96.36
    d = ((94.5 / (b + c) - 3.0) / b + 1.0) * math.sqrt(a * math.pi / 2.0) * n
    x = d * tail2
    y = x ** (2.0 / n)
    if y > 0.05 + a:
        x = NormalDist().inv_cdf(tail2 * 0.5)
        y = x * x
        if n < 5.0:
            c += 0.3 * (n - 4.5) * (x + 0.6)
        c = (((0.05 * d * x - 5.0) * x - 7.0) * x - 2.0) * x + b + c
        y = (((((0.4 * y + 6.3) * y + 36.0) * y + 94.5) / c - y - 3.0) / b + 1.0) * x
        y = a * y * y
        y = math.expm1(y)
    else:
        y = ((1.0 / (((n + 6.0) / (n * y) - 0.089 * d - 0.822) * (n + 2.0) * 3.0) + 0.5 / (n + 4.0)) * y
             - 1.0) * (n + 1.0) / (n + 2.0) + 1.0 / y
    return sign * math.sqrt(n * y)


FEASIBLE_MAX_POINTS = 20_000  # a strided subset: fewer constraints can only widen the range
FEASIBLE_ITERATIONS = 60  # golden-section / bisection steps: 2^-60 of the bracket, far below a ppb


def golden_minimum(g: Callable[[float], float], a: float, c: float, *, stop_at_or_below: float = -math.inf,
                   iterations: int = FEASIBLE_ITERATIONS) -> tuple[float, float]:
    """(x, g(x)) at the minimum of a convex `g` on [a, c] by golden section, stopping early once a value
    at or below `stop_at_or_below` is found (a feasible point is all a feasibility test needs)."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    m1, m2 = c - ratio * (c - a), a + ratio * (c - a)
    g1, g2 = g(m1), g(m2)
    for _ in range(iterations):
        if g1 <= stop_at_or_below or g2 <= stop_at_or_below:
            break
        if g1 <= g2:
            c, m2, g2 = m2, m1, g1
            m1 = c - ratio * (c - a)
            g1 = g(m1)
        else:
            a, m1, g1 = m1, m2, g2
            m2 = a + ratio * (c - a)
            g2 = g(m2)
    return (m1, g1) if g1 <= g2 else (m2, g2)


def feasible_slope_range(x: np.ndarray, y: np.ndarray, half: np.ndarray) -> tuple[float, float] | None:
    """Every slope b for which some line a + b·x passes through all the bars [y − half, y + half].

    When each bar is an honest bound on its sample's error (NTP's root distance) and the truth
    is a line, its slope is certainly in this range: a guarantee, not a confidence level. None
    when no line fits all bars (a bar lied, or the model is wrong). g(b) = max(y − half − b·x) −
    min(y + half − b·x) is convex; the range is {g <= 0}, found by golden section for the
    minimum and bisection for each end. O(n) per step on at most FEASIBLE_MAX_POINTS samples.
    """
    xa, ya, ha = _as_1d_float("x", x), _as_1d_float("y", y), _as_1d_float("half", half)
    if xa.size < 2 or float(np.ptp(xa)) <= 0.0:
        return None
    if xa.size > FEASIBLE_MAX_POINTS:
        step = -(-xa.size // FEASIBLE_MAX_POINTS)
        keep = np.r_[np.arange(0, xa.size - 1, step), xa.size - 1]  # always keep both ends
        xa, ya, ha = xa[keep], ya[keep], ha[keep]
    low, high = ya - ha, ya + ha

    def g(b: float) -> float:
        return float(np.max(low - b * xa)) - float(np.min(high - b * xa))

    i, j = int(np.argmin(xa)), int(np.argmax(xa))
    dx = float(xa[j] - xa[i])
    b_lo, b_hi = (low[j] - high[i]) / dx, (high[j] - low[i]) / dx  # the two end bars alone allow no more
    best, _ = golden_minimum(g, float(b_lo), float(b_hi), stop_at_or_below=0.0)
    if g(best) > 0.0:
        return None

    def edge(inside: float, outside: float) -> float:
        for _ in range(FEASIBLE_ITERATIONS):
            mid = (inside + outside) / 2.0
            if g(mid) <= 0.0:
                inside = mid
            else:
                outside = mid
        return outside  # the outer end of the last bracket: never narrower than the true range

    left = b_lo if g(b_lo) <= 0.0 else edge(best, b_lo)
    right = b_hi if g(b_hi) <= 0.0 else edge(best, b_hi)
    return left, right


def sandwich_slope_se(x: np.ndarray, fit: LineFit) -> float:
    """Heteroscedasticity-consistent (HC1 sandwich) standard error of a weighted fit's slope.

    sqrt(n/(n−2) · Σ (w·dx·r)²) / Σ w·dx², with the fit's final weights and residuals. It does
    not lean on a MAD scale: Huber's asymptotic formula does, and when most points sit at one of
    two error levels (the lab's late-or-on-time server) the MAD collapses and that formula blew
    a 6 s fit's interval up to ±1000 ppm.
    """
    xa = _as_1d_float("x", x)
    dx = xa - fit.x_mean
    wdx = fit.weights * dx
    sxx = float(np.dot(wdx, dx))
    n = xa.size
    if not sxx > 0.0 or n < 3:
        return math.inf
    return math.sqrt(n / (n - 2) * float(np.dot(wdx * fit.residuals, wdx * fit.residuals))) / sxx
