"""Shared helpers: result rows, statistics, clocks and the loopback lab plumbing."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from timekit.lab.manager import Lab

LOOPBACK = "127.0.0.1"


@dataclass
class Row:
    """One summary line: a metric for timekit and for its peer, measured in the same run.

    `ratio` is timekit / peer (None when either side is missing or the peer is 0).
    """

    bench: str
    metric: str
    unit: str
    timekit: float | None
    peer_name: str
    peer: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.timekit is None or self.peer is None or self.peer == 0:
            return None
        return self.timekit / self.peer

    def to_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "metric": self.metric, "unit": self.unit,
                "timekit": self.timekit, "peer_name": self.peer_name, "peer": self.peer,
                "ratio": self.ratio, "note": self.note}


@dataclass
class BenchResult:
    """What one benchmark hands back: summary rows plus free-form detail figures (JSON-able)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    error: str | None = None

    def row(self, metric: str, unit: str, timekit: float | None, peer_name: str,
            peer: float | None, note: str = "") -> None:
        """Append a summary row."""
        self.rows.append(Row(self.name, metric, unit, timekit, peer_name, peer, note))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "elapsed_s": self.elapsed_s, "error": self.error,
                "rows": [r.to_dict() for r in self.rows], "details": self.details,
                "notes": self.notes}


def realtime_ns() -> int:
    """CLOCK_REALTIME, integer ns (the clock the lab truth is anchored to)."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def mono_s() -> float:
    """Monotonic seconds for wall-time measurements (perf_counter)."""
    return time.perf_counter()


def median(xs: Sequence[float]) -> float | None:
    """Median, or None for no data."""
    return statistics.median(xs) if xs else None


def stdev(xs: Sequence[float]) -> float | None:
    """Sample standard deviation, or None for fewer than 2 values."""
    return statistics.stdev(xs) if len(xs) >= 2 else None


def mean(xs: Sequence[float]) -> float | None:
    """Arithmetic mean, or None for no data."""
    return statistics.fmean(xs) if xs else None


def detrended_stdev(t_ns: Sequence[int], y: Sequence[float]) -> float | None:
    """Std dev (same units as `y`) of `y` around its least-squares line in time (drift removed)."""
    if len(y) < 3:
        return None
    t = (np.asarray(t_ns, dtype=np.int64) - int(t_ns[0])).astype(np.float64) / 1e9
    yy = np.asarray(y, dtype=np.float64)
    coef = np.polyfit(t, yy, 1)
    resid = yy - np.polyval(coef, t)
    return float(np.std(resid, ddof=2))


def slope_ppm(t_ns: Sequence[int], y: Sequence[float]) -> float | None:
    """Least-squares slope of `y` (s) against time, in ppm (µs per s)."""
    if len(y) < 3:
        return None
    t = (np.asarray(t_ns, dtype=np.int64) - int(t_ns[0])).astype(np.float64) / 1e9
    return float(np.polyfit(t, np.asarray(y, dtype=np.float64), 1)[0] * 1e6)


def us(x: float | None) -> float | None:
    """Seconds -> microseconds (None passes through)."""
    return None if x is None else x * 1e6


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact number for tables: None -> '-', big values without decimals."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}g}" if ax < 1 else f"{x:.{digits}g}"


@contextlib.contextmanager
def stopping(*stoppers: Any) -> Iterator[None]:
    """Call every `.stop()` given (in reverse) when the block ends, even on error."""
    try:
        yield
    finally:
        for s in reversed(stoppers):
            with contextlib.suppress(Exception):
                s.stop()


def stop_pids(directory: Path, pids: list[int]) -> None:
    """Stop (SIGTERM, SIGKILL after 3 s) and reap processes we started, via Lab.stop()."""
    Lab(directory, extra_pids=list(pids)).stop()


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that is free right now (the OS picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])
