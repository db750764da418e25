"""`timekit report --out DIR`: plots a person can read at a glance, the CSV and a summary.

Files written into DIR (each one complete or not there at all):

- `offset.png`   offset (reference − local) over time per server, with the ± root distance band
- `rtt.png`      round-trip delay per server: histogram (left) and cumulative distribution (right)
- `drift-<server>.png`  per server: the drift fit drawn over the samples, residuals below
- `pauses.png`   pause meter percentiles over time (only when the store holds pause data)
- `stability.png` Allan deviation (left) and time deviation (right) against τ per server, with their
                 95 % confidence bands (only for servers whose samples sit on a regular grid)
- `samples.csv`  every NTP attempt, as `timekit export csv` writes it
- `summary.md`   what it all says: the TrueTime interval now, a table per server, links to the rest

Everything is drawn into a staging directory inside DIR first; only when every file exists are
they moved into place with `os.replace` (summary.md last), so a failure never leaves a half
report. Files a previous report wrote and this one does not (a server that left) are removed,
found through the manifest `.timekit-report.json`; nothing else in DIR is touched.
matplotlib is imported here, inside `write_report`, never at CLI start-up.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from timekit.analysis.drift import reported_status
from timekit.analysis.series import Series
from timekit.atomic_files import atomic_output, pid_alive, temp_pid
from timekit.errors import AnalysisError, TimekitError, UsageError
from timekit.outputs.drift_report import drift_results
from timekit.outputs.export_csv import export_csv
from timekit.store.evidence import load_series
from timekit.units import NS_PER_S, PPM

if TYPE_CHECKING:
    from timekit.store.database import Store

DPI = 110
WIDTH_IN = 12.0  # 1320 px
MIN_HEIGHT_IN = 6.0  # 660 px
ROW_HEIGHT_IN = 2.1  # per server in the small-multiple figures
MARKERS_UP_TO = 3000  # samples per series drawn with markers; more: line only
MAX_DRAWN = 20_000  # points per series actually drawn (evenly thinned beyond; statistics use all)
LOG_SCALE_RATIO = 30.0  # delays spanning more than this factor get a log axis
MANIFEST = ".timekit-report.json"
STAGING_PREFIX = ".timekit-report.tmp-"
CSV_NAME = "samples.csv"
SUMMARY_NAME = "summary.md"
PAUSE_COLUMNS = ("p50_s", "p90_s", "p99_s", "p999_s", "max_s")
PAUSE_LABELS = ("p50", "p90", "p99", "p99.9", "max")


@dataclass(frozen=True)
class ReportResult:
    """What `write_report` wrote: file names inside `directory` (summary first) and what they cover."""

    directory: Path
    files: tuple[str, ...]
    servers: tuple[str, ...]
    n_attempts: int
    notes: tuple[str, ...]


# ----------------------------------------------------------------------------- small helpers
def unit_for(max_abs_s: float) -> tuple[float, str]:
    """(factor, name) to show seconds of this magnitude: s, ms, µs or ns."""
    a = abs(max_abs_s) if math.isfinite(max_abs_s) else 0.0
    if a >= 1.0:
        return 1.0, "s"
    if a >= 1e-3:
        return 1e3, "ms"
    if a >= 1e-6 or a == 0.0:
        return 1e6, "µs"
    return 1e9, "ns"


def fmt_value(value_s: float | None, signed: bool = True) -> str:
    """Seconds in the unit their magnitude asks for ('+250.861 ms', '83.2 µs'); '–' for no data."""
    if value_s is None or not math.isfinite(value_s):
        return "–"
    factor, name = unit_for(value_s)
    digits = 1 if name in ("µs", "ns") else 3
    return f"{value_s * factor:{'+' if signed else ''}.{digits}f} {name}"


def num_text(value: float) -> str:
    """A number with 4 significant digits and no exponent: 79.91, 0.2783, 53230."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def utc_text(t_ns: int | None) -> str:
    """An instant as UTC ISO 8601 with nanoseconds."""
    if t_ns is None:
        return "–"
    secs, ns = divmod(int(t_ns), NS_PER_S)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{ns:09d} UTC"


def slug(server: str) -> str:
    """A file-name-safe form of a server name ('127.0.0.1:123' -> '127.0.0.1_123')."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", server).strip("_") or "server"


GAP_FACTOR = 20  # a gap this many median spacings long breaks the offset line


def _thin(mask: np.ndarray, limit: int = MAX_DRAWN) -> np.ndarray:
    """`mask` with only every k-th True kept so that at most about `limit` remain (drawing only)."""
    idx = np.flatnonzero(mask)
    if idx.size <= limit:
        return mask
    out = np.zeros_like(mask)
    out[idx[:: math.ceil(idx.size / limit)]] = True
    return out


def _break_gaps(t_ns: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Insert a NaN point into every gap much longer than the usual spacing, so a line plot does
    not draw a straight line across hours without samples (it would look like data)."""
    t = np.asarray(t_ns, dtype=np.int64)
    if t.size < 3:
        return (t, *values)
    dt = np.diff(t)
    gaps = np.flatnonzero(dt > GAP_FACTOR * max(float(np.median(dt)), 1.0))
    if gaps.size == 0:
        return (t, *values)
    mids = t[gaps] + dt[gaps] // 2
    out_t = np.insert(t, gaps + 1, mids)
    return (out_t, *(np.insert(np.asarray(v, dtype=np.float64), gaps + 1, np.nan) for v in values))


def _times(t_ns: np.ndarray) -> np.ndarray:
    return np.asarray(t_ns, dtype=np.int64).astype("datetime64[ns]")


# ----------------------------------------------------------------------------- figures
def _style() -> dict[str, Any]:
    return {"font.size": 10, "axes.titlesize": 10.5, "axes.titleweight": "bold", "axes.grid": True,
            "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
            "legend.fontsize": 8.5, "legend.framealpha": 0.85, "figure.titlesize": 13,
            "figure.titleweight": "bold", "timezone": "UTC"}


def _new_figure(height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, max(MIN_HEIGHT_IN, height_in)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _time_axis(ax: Any, label: bool = True) -> None:
    """UTC time axis: HH:MM:SS ticks and the date in the label within a day, dates beyond."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter

    loc = mdates.AutoDateLocator(tz=UTC, minticks=5, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    first, last = (mdates.num2date(x, tz=UTC) for x in ax.get_xlim())
    if (last - first).total_seconds() < 86_400:
        def hms(x: float, _pos: Any) -> str:  # milliseconds only on ticks between whole seconds
            ms = round(x * 86_400_000)  # matplotlib date numbers are days since the Unix epoch
            text = datetime.fromtimestamp(ms // 1000, UTC).strftime("%H:%M:%S")
            return text + (f".{ms % 1000:03d}" if ms % 1000 else "")

        ax.xaxis.set_major_formatter(FuncFormatter(hms))
        day = first.strftime("%Y-%m-%d")
        if last.date() != first.date():
            day += last.strftime(" to %Y-%m-%d")
        text = f"time (UTC, {day})"
    else:
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=UTC))
        text = "time (UTC)"
    if label:
        ax.set_xlabel(text)


def _plain_y(ax: Any) -> None:
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI)


def _offset_figure(series: dict[str, Series], failures: dict[str, np.ndarray], colors: dict[str, Any],
                   path: Path) -> None:
    fig = _new_figure(1.2 + ROW_HEIGHT_IN * len(series))
    fig.suptitle("Offset of each reference over time (reference − local: positive = this clock is behind)")
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, full) in zip(axes, series.items(), strict=True):
        s = full.select(_thin(np.ones(len(full), dtype=bool)))
        rd = np.where(np.isfinite(s.root_distance_s), s.root_distance_s, np.nan)
        factor, unit = unit_for(float(np.nanmax(np.abs(s.offset_s) + np.nan_to_num(rd))))
        t_ns, off, rd = _break_gaps(s.t_local_ns, s.offset_s, rd)
        t = _times(t_ns)
        o = off * factor
        ax.fill_between(t, o - rd * factor, o + rd * factor, color=colors[name], alpha=0.22, lw=0,
                        label="± root distance (NTP error bound)")
        drawn = f" ({len(s)} drawn)" if len(s) < len(full) else ""
        ax.plot(t, o, marker="." if len(s) <= MARKERS_UP_TO else None, ms=3.5, lw=0.9, color=colors[name],
                label=f"offset, {len(full)} ok samples{drawn}")
        fails = failures.get(name)
        if fails is not None and fails.size:
            ax.plot(_times(fails), np.zeros(fails.size), "x", color="crimson", ms=5, mew=1.2,
                    transform=ax.get_xaxis_transform(), clip_on=False,
                    label=f"failed attempt ({fails.size})")
        ax.set_title(name, loc="left")
        ax.set_ylabel(f"offset ({unit})")
        _plain_y(ax)
        ax.legend(loc="upper left", ncols=3)
        ax.margins(y=0.25)
        _time_axis(ax, label=ax is axes[-1])
    _save(fig, path)


def _rtt_figure(series: dict[str, Series], colors: dict[str, Any], path: Path) -> None:
    delays = np.concatenate([s.delay_s for s in series.values()])
    delays = delays[np.isfinite(delays) & (delays >= 0)]
    factor, unit = unit_for(float(np.median(delays)) if delays.size else 0.0)
    positive = delays[delays > 0]
    log = positive.size > 1 and float(positive.max()) / float(positive.min()) > LOG_SCALE_RATIO
    if log:
        bins = np.geomspace(positive.min() * factor, positive.max() * factor, 50)
    else:
        bins = np.histogram_bin_edges(delays * factor, bins=min(50, max(10, delays.size // 10)))
    from matplotlib.ticker import MaxNLocator

    n = len(series)
    fig = _new_figure(1.2 + 1.6 * n)
    fig.suptitle("Round-trip delay δ = (T4 − T1) − (T3 − T2) per server")
    left, right = fig.subfigures(1, 2, width_ratios=(1.25, 1.0))
    hists = left.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    legend_share = 0.0 if n < 4 else 0.3  # many servers: the legend gets its own space
    if legend_share:
        cdf, holder = right.subplots(2, 1, height_ratios=(1 - legend_share, legend_share))
    else:
        cdf, holder = right.subplots(), None
    for ax, (name, s) in zip(hists, series.items(), strict=True):
        d = np.sort(s.delay_s[np.isfinite(s.delay_s)]) * factor
        p50, p99 = (float(np.percentile(d, q)) for q in (50, 99))
        ax.hist(d, bins=bins, color=colors[name], alpha=0.8)
        ax.axvline(p50, color="black", lw=1.1, label=f"median {num_text(p50)} {unit}")
        ax.axvline(p99, color="black", lw=1.1, ls="--", label=f"p99 {num_text(p99)} {unit}")
        ax.set_ylabel("samples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.set_title(f"{name}  (n = {d.size})", loc="left")
        ax.legend(loc="upper right")
        keep = _thin(np.ones(d.size, dtype=bool))
        keep[-1] = True
        xs = np.concatenate([d[:1], d[keep]])  # the step starts at 0 at the smallest delay
        ys = np.concatenate([[0.0], (np.arange(1, d.size + 1) / d.size)[keep]])
        cdf.step(xs, ys, where="post", color=colors[name], lw=1.6,
                 label=f"{name}: median {num_text(p50)}, p99 {num_text(p99)} {unit}")
    hists[-1].set_xlabel(f"round-trip delay ({unit})")
    for q, text in ((0.5, "median"), (0.99, "p99")):
        cdf.axhline(q, color="grey", lw=0.8, ls=":")
        cdf.annotate(text, (0.0, q), xycoords=("axes fraction", "data"), xytext=(3, 2),
                     textcoords="offset points", fontsize=8, color="dimgrey")
    cdf.set_title("Cumulative distribution (fraction of samples ≤ delay)", loc="left")
    cdf.set_xlabel(f"round-trip delay ({unit})")
    cdf.set_ylabel("fraction of samples")
    cdf.set_ylim(0, 1.02)
    if holder is not None:
        holder.axis("off")
        holder.legend(*cdf.get_legend_handles_labels(), loc="center", title="server: delay percentiles")
    else:
        cdf.legend(loc="lower right")
    if log:
        from matplotlib.ticker import FuncFormatter

        for ax in (*hists, cdf):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    _save(fig, path)


def _line_s(fit: Any, t_ns: np.ndarray) -> np.ndarray:
    """The fitted model at `t_ns`: offset(t) = offset_s − drift_ppm·1e-6·(t − t_end)/1e9, seconds."""
    dt_s = (np.asarray(t_ns, dtype=np.int64) - fit.t_end_ns).astype(np.float64) / NS_PER_S
    return fit.offset_s - fit.drift_ppm * PPM * dt_s


def _drift_figure(name: str, s: Series, fit: Any, max_root_distance_s: float, color: Any, path: Path) -> Any:
    """The server's drift fit (the assessment's, over its own window) drawn over the report's samples."""
    from timekit.analysis.drift import delay_spike_threshold_s

    fig = _new_figure(MIN_HEIGHT_IN + 0.5)
    fig.suptitle(f"Drift of this clock against {name}")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1.0))
    rd = np.where(np.isfinite(s.root_distance_s), s.root_distance_s, np.nan)
    factor, unit = unit_for(float(np.nanmax(np.abs(s.offset_s))))
    t = _times(s.t_local_ns)
    usable = s.root_distance_s <= max_root_distance_s
    spike = np.zeros(len(s), dtype=bool)
    if usable.any():
        spike[usable] = s.delay_s[usable] > delay_spike_threshold_s(s.delay_s[usable])
    fitted = (fit is not None and fit.t_start_ns is not None and fit.drift_ppm is not None
              and fit.offset_s is not None)
    in_window = usable & ~spike & ((s.t_local_ns >= fit.t_start_ns) if fitted else usable)
    groups = [(in_window, color, "sample used by the fit (bar: ± root distance)" if fitted
               else "usable sample (bar: ± root distance)"),
              (usable & spike, "darkorange", "delay spike (left out)"),
              ((~in_window & ~spike) | ~usable, "grey",
               "not fitted (before a step, trimmed, or too uncertain)")]
    for mask, c, label in groups:
        if mask.any():
            drawn = _thin(mask)
            top.errorbar(t[drawn], s.offset_s[drawn] * factor, yerr=rd[drawn] * factor, fmt="o", ms=3,
                         color=c, ecolor=c, elinewidth=0.7, alpha=0.75, label=f"{label} ({int(mask.sum())})")
    for st in fit.steps if fit is not None else ():
        top.axvline(np.datetime64(int(st.t_ns), "ns"), color="purple", ls="--", lw=1,
                    label=f"step {fmt_value(st.size_s)}")
    focus = usable & ~spike  # delay spikes and too uncertain samples may leave the axis
    if focus.any() and (~focus).any():
        lo_y = float(np.nanmin((s.offset_s - np.nan_to_num(rd))[focus]))
        hi_y = float(np.nanmax((s.offset_s + np.nan_to_num(rd))[focus]))
        pad = max(hi_y - lo_y, 1e-9) * 0.25
        off = int(np.count_nonzero(((s.offset_s < lo_y - pad) | (s.offset_s > hi_y + pad)) & ~focus))
        top.set_ylim((lo_y - pad) * factor, (hi_y + pad) * factor)
        if off:
            top.text(0.99, 0.98, f"{off} delay spike(s) beyond this axis (see offset.png)",
                     transform=top.transAxes, ha="right", va="top", fontsize=8.5, color="dimgrey")
    top.set_ylabel(f"offset ({unit})")
    top.set_title("offset (reference − local) and the fitted line", loc="left")
    _plain_y(top)
    if fitted and fit.drift_ci95_ppm is not None and fit.drift_ppm is not None:
        ends = np.array([fit.t_start_ns, fit.t_end_ns], dtype=np.int64)
        lo, hi = fit.drift_ci95_ppm
        top.plot(_times(ends), _line_s(fit, ends) * factor, color="crimson", lw=2.2, zorder=5,
                 label=f"fit: drift {fit.drift_ppm:+.3f} ppm (95% CI {lo:+.3f} … {hi:+.3f})")
        res = (s.offset_s[in_window] - _line_s(fit, s.t_local_ns[in_window]))
        rfactor, runit = unit_for(float(np.nanmax(np.abs(np.concatenate([res, rd[in_window]])))))
        drawn = _thin(np.ones(res.size, dtype=bool))
        bottom.errorbar(t[in_window][drawn], res[drawn] * rfactor, yerr=rd[in_window][drawn] * rfactor,
                        fmt="o", ms=3, color=color, ecolor=color, elinewidth=0.7, alpha=0.75)
        bottom.axhline(0, color="crimson", lw=1.5, zorder=5)
        rstd = fit.residual_std_s
        bottom.set_title(f"residuals (offset − fit); rms {fmt_value(rstd, signed=False)}, {fit.n_used} "
                         f"samples over {fit.span_s:.4g} s, fit status: {reported_status(fit)[0]}",
                         loc="left")
        bottom.set_ylabel(f"residual ({runit})")
        _plain_y(bottom)
        sign = "gains on" if fit.drift_ppm > 0 else "loses against"
        top.set_title(f"offset (reference − local) and the fitted line: this clock {sign} the reference "
                      f"{abs(fit.drift_ppm):.3f} µs per second (drift > 0: gains)", loc="left")
    else:
        for ax in (top, bottom):
            why = fit.reason if fit is not None else "no sample the interval can still use"
            ax.text(0.5, 0.5, f"no drift fit: {why}", transform=ax.transAxes, ha="center",
                    va="center", wrap=True, color="dimgrey")
        bottom.set_ylabel("residual")
        bottom.set_yticks([])
    top.legend(loc="best", fontsize=8)
    _time_axis(top, label=False)
    _time_axis(bottom)
    _save(fig, path)
    return fit


def _pause_figure(rows: list[dict[str, Any]], path: Path) -> None:
    t = _times(np.array([r["t_local_ns"] for r in rows], dtype=np.int64))
    cols = {c: np.array([r[c] for r in rows], dtype=np.float64) for c in (*PAUSE_COLUMNS, "suspend_s")}
    factor, unit = unit_for(float(np.median(cols["p99_s"])))
    fig = _new_figure(MIN_HEIGHT_IN)
    interval = float(np.median([r["interval_s"] for r in rows]))
    fig.suptitle("Pauses: how late a sleeping thread woke up (jHiccup-style pause meter)")
    ax = fig.subplots()
    palette = ("#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#444444")
    for c, label, colour in zip(PAUSE_COLUMNS, PAUSE_LABELS, palette, strict=True):
        v = np.where(cols[c] > 0, cols[c] * factor, np.nan)  # a log axis cannot show 0
        if c == "max_s":  # markers only: p99.9 often equals the max and must stay visible
            ax.plot(t, v, "v", ms=6, mfc="none", color=colour, label=label)
        else:
            ax.plot(t, v, marker="." if len(rows) <= MARKERS_UP_TO else None, lw=1.5, color=colour,
                    label=label)
    suspended = cols["suspend_s"] > 0
    for i in np.flatnonzero(suspended):
        ax.axvline(t[i], color="crimson", lw=1.2, alpha=0.7,
                   label="suspend" if i == np.flatnonzero(suspended)[0] else None)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"wake-up lateness ({unit}, log scale)")
    ax.set_title(f"percentiles per {interval:.3g} s interval, {len(rows)} intervals", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="per interval")
    _time_axis(ax)
    _save(fig, path)


def stability_curves(series: dict[str, Series], fits: dict[str, Any]) -> dict[str, Any]:
    """Each server's deviations (`analysis.stability.deviations`) over its samples since its newest step;
    only the servers whose samples sit on a regular grid."""
    from timekit.analysis.stability import deviations, phase_grid

    out = {}
    for name, s in series.items():
        fit = fits.get(name)
        regime = s.select(s.t_local_ns >= fit.steps[-1].t_ns) if fit is not None and fit.steps else s
        dev = deviations(phase_grid(regime.t_local_ns, regime.offset_s, regime.delay_s))
        if dev is not None:
            out[name] = dev
    return out


def _stability_figure(curves: dict[str, Any], colors: dict[str, Any], path: Path) -> None:
    """ADEV and TDEV against τ, log-log, one line per server with its 95 % confidence band."""
    fig = _new_figure(MIN_HEIGHT_IN)
    fig.suptitle("Stability of this clock against each reference (95 % confidence bands)")
    ax_a, ax_t = fig.subplots(1, 2)
    for name, d in curves.items():
        c = colors.get(name)
        ax_a.loglog(d.tau_s, d.adev, "o-", ms=4, color=c, label=name)
        ax_a.fill_between(d.tau_s, d.adev_ci[:, 0], d.adev_ci[:, 1], color=c, alpha=0.18, lw=0)
        ax_t.loglog(d.tau_s, d.tdev, "o-", ms=4, color=c, label=name)
        ax_t.fill_between(d.tau_s, d.tdev_ci[:, 0], d.tdev_ci[:, 1], color=c, alpha=0.18, lw=0)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for ax in (ax_a, ax_t):
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax_a.set_title("Allan deviation (overlapping)", loc="left")
    ax_a.set_xlabel("averaging time τ (s)")
    ax_a.set_ylabel("σ_y(τ)  (fractional frequency; 1e-6 = 1 ppm)")
    ax_t.set_title("time deviation", loc="left")
    ax_t.set_xlabel("averaging time τ (s)")
    ax_t.set_ylabel("TDEV(τ)  (s)")
    ax_t.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def _stability_section(fleet: Any, curves: dict[str, Any]) -> list[str]:
    """Stability per server (the shortest and longest τ, the noise found) and the holdover."""
    from timekit.analysis.stability import NOISE_NAMES
    from timekit.outputs.holdover_words import holdover_doc, holdover_words

    lines = ["## Stability and holdover", ""]
    hold = holdover_doc(fleet.holdover)
    lines += [f"Holdover (how long the interval of `timekit now` stays within "
              f"± {fmt_value(hold['width_s'], False) if hold else '–'} if every reference fell silent now): "
              f"**{holdover_words(hold)}**.", ""]
    if not curves:
        return [*lines, "No server's samples sit on a regular enough grid for a stability measurement.", ""]
    lines += ["| server | τ0 | ADEV at τ0 [95 %] | longest τ | ADEV there [95 %] | TDEV there "
              "| noise there |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, d in curves.items():
        lines.append(f"| `{name}` | {d.tau_s[0]:.4g} s | {d.adev[0]:.3e} [{d.adev_ci[0, 0]:.2e}, "
                     f"{d.adev_ci[0, 1]:.2e}] | {d.tau_s[-1]:.4g} s | {d.adev[-1]:.3e} "
                     f"[{d.adev_ci[-1, 0]:.2e}, {d.adev_ci[-1, 1]:.2e}] "
                     f"| {fmt_value(float(d.tdev[-1]), False)} "
                     f"| {NOISE_NAMES[int(d.alpha[-1])]} |")
    return [*lines, "", "Every τ with its interval: `timekit analyze stability`.", ""]


# ----------------------------------------------------------------------------- summary
def _status_text(st: Any, selection: Any) -> str:
    """Selection verdict, skew-check health, loss and the last error of one server, in words."""
    parts = []
    if st.truechimer is not None:
        parts.append("truechimer" if st.truechimer else "falseticker")
    elif st.offset_s is not None:
        parts.append(f"not judged ({selection.status.replace('_', ' ') if selection else 'no interval'})")
    if st.health is not None:
        parts.append(f"skew check: {st.health}")
    loss = st.loss_ratio
    if loss:
        parts.append(f"{loss:.0%} lost")
    if st.last_error:
        parts.append(f"last attempt: {st.last_error}")
    if st.offset_s is None:
        parts.append("no usable sample")
    return ", ".join(parts) or "–"


def _daemon_section(v: Any) -> list[str]:
    """The host's time daemon: what it claims and timekit's verdict on the claim (analysis.time_daemon)."""
    lines = ["## The host's time daemon", ""]
    if v is None:
        return [*lines, "No reading stored (`timekit sample daemon`, or `[daemon]` in the collect config).",
                ""]
    claim = "–"
    if v.offset_s is not None and v.claimed_bound_s is not None:
        claim = f"{fmt_value(v.offset_s)} ± {fmt_value(v.claimed_bound_s, False)}"
    measured = "–" if v.measured is None else "{} .. {}".format(*(fmt_value(x) for x in v.measured))
    lines += ["| daemon | synchronized | claims (reference − local) | timekit measured | follows "
              "| verdict |", "|---|---|---:|---:|---|---|",
              f"| {v.daemon} | {'yes' if v.synchronized else 'no'} | {claim} | {measured} "
              f"| {v.selected or '–'} | **{v.status.replace('_', ' ')}** |", "",
              f"Why: {v.reason}" + "".join(f"; {more}" for more in v.details[1:]), ""]
    return lines


def _summary(*, store_path: Path, since_ns: int | None, fleet: Any, drift: dict[str, dict[str, Any]],
             series: dict[str, Series], n_attempts: int, files: dict[str, str], pause_note: str | None,
             t_range: tuple[int, int], curves: dict[str, Any] | None = None) -> str:
    iv = fleet.interval
    lines = ["# timekit report", "",
             f"Generated {utc_text(fleet.as_of_ns)} from `{store_path}`"
             + (f", samples since {utc_text(since_ns)}" if since_ns is not None else ", all stored samples")
             + f": {n_attempts} NTP attempts to {len(series)} servers with usable samples, "
             f"{utc_text(t_range[0])} to {utc_text(t_range[1])}.", "",
             "Signs: offset = reference − local (positive: this clock is behind); "
             "drift > 0: this clock runs fast (gains).", "",
             "## What time is it? (TrueTime interval now)", ""]
    if iv is None or iv.earliest_ns is None:
        lines.append(f"Status **{iv.status if iv else 'unknown'}**: no interval ({iv.reason if iv else ''}).")
    else:
        centre = fmt_value(fleet.interval_midpoint_offset_s)
        lines += [f"Status **{iv.status}**: true time = this clock {centre} "
                  f"± {fmt_value(iv.uncertainty_s, False)} (earliest {utc_text(iv.earliest_ns)}, "
                  f"latest {utc_text(iv.latest_ns)}, as of {utc_text(iv.as_of_ns)} on this clock).", "",
                  f"Why: {iv.reason}"]
    lines += ["", "## Servers", "",
              "| server | ok / attempts | offset (filtered) | delay | root distance | jitter "
              "| drift (ppm) | drift 95% CI (ppm) | drift fit | status |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for st in fleet.servers:
        d = drift.get(st.server)
        drift_txt, ci_txt, fit_txt = "–", "–", "–"
        if d is not None:
            fit_txt = d["status"]
            if d["drift_ppm"] is not None:
                drift_txt = f"{d['drift_ppm']:+.3f}"
                fit_txt += f", {d['n_used']} samples over {d['span_s']:.4g} s"
            if d["drift_ci95_ppm"] is not None:
                ci_txt = "[{:+.3f}, {:+.3f}]".format(*d["drift_ci95_ppm"])
        lines.append(
            f"| {st.server} | {st.n_ok} / {st.n_attempts} | {fmt_value(st.offset_s)} "
            f"| {fmt_value(st.delay_s, False)} | {fmt_value(st.root_distance_s, False)} "
            f"| {fmt_value(st.jitter_s, False)} | {drift_txt} | {ci_txt} | {fit_txt} "
            f"| {_status_text(st, iv.selection if iv else None)} |")
    lines += ["", "Offset, delay, root distance: the newest usable sample; jitter: RMS of successive offset "
              "differences over the newest 8; drift: the fit `timekit check`, `now` and `analyze drift` "
              "use (each server's newest samples); "
              "status: interval selection (truechimer / falseticker) and the skew checks.", "",
              ""]
    lines += _daemon_section(fleet.daemon)
    lines += _stability_section(fleet, curves or {})
    lines += ["## Plots", ""]
    for name, caption in files.items():
        if name.endswith(".png"):
            lines += [f"### [{caption}]({name})", "", f"![{caption}]({name})", ""]
    lines += ["## Pauses", "", pause_note or "See the pause plot above.", "",
              "## Data", "",
              f"- [{CSV_NAME}]({CSV_NAME}): every NTP attempt (ok or not), one row per attempt, columns as "
              "`timekit export csv` (see README, \"CSV export\"); `pandas.read_csv` reads it as is.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- orchestration
def _prepare_dir(out: Path) -> bool:
    """Create `out` if needed; True when this call created it. A symlink to a directory is followed
    only when it is the user's or root's (as `--out FILE`, `atomic_files.out_file`)."""
    if out.is_symlink() and out.lstat().st_uid not in (os.geteuid(), 0):
        raise UsageError(f"--out {out} is a symlink owned by uid {out.lstat().st_uid}, not by you or root: "
                         "refusing to follow it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TimekitError(f"cannot create report directory {out}: {exc.strerror}") from None
    for p in out.glob(STAGING_PREFIX + "*"):  # left by a killed report
        pid = temp_pid(p.name)
        if pid is not None and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
    return created


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path) as fh:
        fh.write(text)


def _publish(staging: Path, out: Path, names: list[str]) -> None:
    """Move the staged files into `out` (summary last) and drop files only the previous report had."""
    old: list[str] = []
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        pass
    for name in names:  # every entry checked before any is replaced: all files or none
        try:
            mode = os.lstat(out / name).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise UsageError(f"--out {out}: {name} there is not a regular file (a device, FIFO, socket, "
                             "directory or symlink): refusing to replace it")
    for name in sorted(names, key=lambda n: n == SUMMARY_NAME):
        with open(staging / name, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(staging / name, out / name)
    _write_text_atomic(out / MANIFEST, json.dumps({"files": names}))
    for name in set(old) - set(names):
        if "/" not in name and not name.startswith("."):
            try:
                (out / name).unlink()
            except OSError:
                pass


def write_report(store: Store, out: Path, *, since_ns: int | None = None,
                 now: tuple[int, int] | None = None) -> ReportResult:
    """Draw the report of the store's samples (since `since_ns`) into directory `out`.

    Raises AnalysisError (and leaves `out` alone) when there are no usable NTP samples.
    """
    from timekit.analysis.assessment import Policy
    from timekit.analysis.verdict import DEFAULT_WINDOW_S
    from timekit.collectors.clocks import realtime_ns
    from timekit.pipeline.assess import assess_store

    out = Path(out)
    series = load_series(store, since_ns=since_ns)  # what the plots draw
    attempts = store.attempt_rows(["server", "ok", "t_local_ns"], since_ns=since_ns)
    if not series:
        what = "" if since_ns is None else f" since {utc_text(since_ns)}"
        raise AnalysisError(f"no usable NTP samples{what} in {store.path}: nothing to report "
                            "(take some with `timekit sample ntp SERVER...`)")
    failures: dict[str, list[int]] = {}
    for server, ok, t_ns in attempts:
        if not ok:
            failures.setdefault(server, []).append(t_ns)
    fail_arrays = {k: np.array(v, dtype=np.int64) for k, v in failures.items()}
    t_first = min(int(s.t_local_ns[0]) for s in series.values())
    t_last = max(int(s.t_local_ns[-1]) for s in series.values())
    oldest_ns = since_ns if since_ns is not None else t_first
    rough_ns = now[0] if now is not None else realtime_ns()
    window_s = max(DEFAULT_WINDOW_S, (rough_ns - oldest_ns) / NS_PER_S + 1)  # loss over the whole report
    policy = Policy()
    fleet = assess_store(store, policy, now=now, window_s=window_s)  # the numbers: as check and now
    drift = {r["server"]: r for r in drift_results(fleet)}
    fits = {st.server: st.fit for st in fleet.servers}
    pauses = store.pause_rows(since_ns=since_ns)

    import matplotlib

    created = _prepare_dir(out)
    staging = out / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    names = sorted(series)
    cmap = matplotlib.colormaps["tab10"]
    colors = {n: cmap(i % 10) for i, n in enumerate(names)}
    files: dict[str, str] = {}
    notes: list[str] = []
    try:
        with matplotlib.rc_context(_style()):  # type: ignore[arg-type]  # rcParams keys typed as literals
            _offset_figure(series, fail_arrays, colors, staging / "offset.png")
            files["offset.png"] = "Offset over time per server, with the ± root distance band"
            _rtt_figure(series, colors, staging / "rtt.png")
            files["rtt.png"] = "Round-trip delay per server: histogram and cumulative distribution"
            for n in names:
                fname = f"drift-{slug(n)}.png"
                _drift_figure(n, series[n], fits.get(n), policy.interval.max_root_distance_s, colors[n],
                              staging / fname)
                files[fname] = f"Drift fit and residuals: {n}"
            curves = stability_curves(series, fits)
            if curves:
                _stability_figure(curves, colors, staging / "stability.png")
                files["stability.png"] = "Allan and time deviation against τ, with 95 % confidence bands"
            pause_note = None
            if pauses:
                _pause_figure(pauses, staging / "pauses.png")
                files["pauses.png"] = "Pause percentiles over time"
            else:
                pause_note = "No pause data in the store (take some with `timekit sample pauses`)."
                notes.append("no pause data")
        res = export_csv(store, staging / CSV_NAME, kind="ntp", since_ns=since_ns)
        files[CSV_NAME] = f"every NTP attempt ({res.rows} rows)"
        summary = _summary(store_path=store.path, since_ns=since_ns, fleet=fleet, drift=drift, series=series,
                           n_attempts=len(attempts), files=files, pause_note=pause_note,
                           t_range=(t_first, t_last), curves=curves)
        (staging / SUMMARY_NAME).write_text(summary, encoding="utf-8")
        written = [SUMMARY_NAME, *files]
        _publish(staging, out, written)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            try:
                out.rmdir()  # only if still empty: never remove anything we did not write
            except OSError:
                pass
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return ReportResult(out, tuple(written), tuple(names), len(attempts), tuple(notes))
