"""The kernel's NTP state, read with adjtimex(2) (modes = 0: read-only, unprivileged).

Two layers, so tests never need a kernel:

- `read_kernel_state(adjtimex_fn=None)` calls libc `adjtimex` through ctypes (or an
  injected fake) and returns `None` -- never raises -- when the kernel state is
  unavailable: EPERM/EACCES (container seccomp), ENOSYS/EOPNOTSUPP, no libc symbol,
  or not Linux (FAULTS C13).
- `parse_timex(raw, return_code)` is pure: it turns the raw `struct timex` fields
  and the call's return code into a `KernelClockState` with units in every name.

Kernel units (linux/timex.h, kernel/time/ntp.c):

- `offset`: remaining phase adjustment, ns when STA_NANO is set, else µs (C11).
  Positive means the kernel is still advancing the clock, i.e. the clock is behind
  its reference: the same sign as NTP's `offset_s` (reference − local).
- `freq`, `tolerance`: "scaled ppm", ppm × 2**16. `freq` is the frequency correction
  the kernel applies (positive: the clock is sped up, its oscillator runs slow).
- `maxerror`, `esterror`: µs. The kernel adds `tolerance` (500 µs/s) to `maxerror`
  every second and caps it at NTP_PHASE_LIMIT = 16 s, setting STA_UNSYNC there.
  Negative values (KUDU-3521) or values above 16 s are garbage: `None` (C10).
- `precision`, `tick`: µs. `constant`: PLL time constant (log2, dimensionless).
- `tai`: TAI − UTC in whole seconds (0 when no daemon told the kernel).

A caveat worth knowing (C8): chronyd without `rtcsync` keeps STA_UNSYNC set on
purpose (to stop the kernel's 11-minute RTC sync), so the call returns TIME_ERROR
while `maxerror` is kept at a few ms. `unsynchronized` reports what the kernel says;
`daemon_maintained` says whether some daemon is keeping `maxerror` below the 16 s
ceiling. Neither makes `maxerror` a bound on true time by itself (C9: timesyncd sets
it to 0 on every update, without the root distance).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from timekit.errors import CollectorError
from timekit.units import NS_PER_S

__all__ = [
    "STATUS_BITS",
    "TIME_STATES",
    "KernelClockState",
    "LeapPending",
    "TimeState",
    "Timex",
    "TimexFields",
    "TimexRaw",
    "libc_adjtimex",
    "parse_timex",
    "read_kernel_state",
]

TimeState = Literal["TIME_OK", "TIME_INS", "TIME_DEL", "TIME_OOP", "TIME_WAIT", "TIME_ERROR"]
LeapPending = Literal["insert", "delete"]

# adjtimex(2) return values (linux/timex.h).
TIME_STATES: dict[int, TimeState] = {
    0: "TIME_OK",
    1: "TIME_INS",  # insert a leap second at the end of the UTC day
    2: "TIME_DEL",  # delete a leap second at the end of the UTC day
    3: "TIME_OOP",  # leap second in progress (23:59:60)
    4: "TIME_WAIT",  # leap second has occurred
    5: "TIME_ERROR",  # clock not synchronized (STA_UNSYNC, or a PPS fault)
}

# Status bits (linux/timex.h), in bit order.
STA_PLL = 0x0001
STA_PPSFREQ = 0x0002
STA_PPSTIME = 0x0004
STA_FLL = 0x0008
STA_INS = 0x0010
STA_DEL = 0x0020
STA_UNSYNC = 0x0040
STA_FREQHOLD = 0x0080
STA_PPSSIGNAL = 0x0100
STA_PPSJITTER = 0x0200
STA_PPSWANDER = 0x0400
STA_PPSERROR = 0x0800
STA_CLOCKERR = 0x1000
STA_NANO = 0x2000
STA_MODE = 0x4000
STA_CLK = 0x8000

STATUS_BITS: dict[int, str] = {
    STA_PLL: "STA_PLL",
    STA_PPSFREQ: "STA_PPSFREQ",
    STA_PPSTIME: "STA_PPSTIME",
    STA_FLL: "STA_FLL",
    STA_INS: "STA_INS",
    STA_DEL: "STA_DEL",
    STA_UNSYNC: "STA_UNSYNC",
    STA_FREQHOLD: "STA_FREQHOLD",
    STA_PPSSIGNAL: "STA_PPSSIGNAL",
    STA_PPSJITTER: "STA_PPSJITTER",
    STA_PPSWANDER: "STA_PPSWANDER",
    STA_PPSERROR: "STA_PPSERROR",
    STA_CLOCKERR: "STA_CLOCKERR",
    STA_NANO: "STA_NANO",
    STA_MODE: "STA_MODE",
    STA_CLK: "STA_CLK",
}

SCALED_PPM = 1 << 16  # freq, tolerance, ppsfreq, stabil: ppm × 2**16
US_PER_S = 1_000_000
# NTP_PHASE_LIMIT: the kernel's maxerror ceiling, 16 s in µs ("no bound at all").
MAXERROR_CEILING_US = 16_000_000
MAXERROR_CEILING_S = MAXERROR_CEILING_US / US_PER_S

# errno values meaning "this process may not / cannot read the kernel clock state".
_UNAVAILABLE_ERRNOS = frozenset(
    {errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
)


class _Timeval(ctypes.Structure):
    """`struct timeval` (64-bit Linux): tv_usec holds ns when STA_NANO is set."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timex(ctypes.Structure):
    """glibc `struct timex` for LP64 Linux (x86_64, aarch64): 208 bytes.

    `modes` is an int, the numeric fields are `long`, and the struct ends with
    eleven `int :32` padding fields (`_reserved`).
    """

    _fields_ = [
        ("modes", ctypes.c_int),  # mode selector; 0 = read only
        ("offset", ctypes.c_long),  # time offset: ns with STA_NANO, else µs
        ("freq", ctypes.c_long),  # frequency offset, scaled ppm
        ("maxerror", ctypes.c_long),  # maximum error, µs
        ("esterror", ctypes.c_long),  # estimated error, µs
        ("status", ctypes.c_int),  # STA_* bits
        ("constant", ctypes.c_long),  # PLL time constant
        ("precision", ctypes.c_long),  # clock precision, µs (read only)
        ("tolerance", ctypes.c_long),  # frequency tolerance, scaled ppm (read only)
        ("time", _Timeval),  # current time (read only)
        ("tick", ctypes.c_long),  # µs between clock ticks
        ("ppsfreq", ctypes.c_long),  # PPS frequency, scaled ppm (read only)
        ("jitter", ctypes.c_long),  # PPS jitter, ns or µs (read only)
        ("shift", ctypes.c_int),  # PPS interval duration, log2 s (read only)
        ("stabil", ctypes.c_long),  # PPS stability, scaled ppm (read only)
        ("jitcnt", ctypes.c_long),  # PPS jitter limit exceeded (read only)
        ("calcnt", ctypes.c_long),  # PPS calibration intervals (read only)
        ("errcnt", ctypes.c_long),  # PPS calibration errors (read only)
        ("stbcnt", ctypes.c_long),  # PPS stability limit exceeded (read only)
        ("tai", ctypes.c_int),  # TAI − UTC, s (read only)
        ("_reserved", ctypes.c_int * 11),  # int :32 × 11
    ]


class TimexFields(Protocol):
    """What `parse_timex` reads: satisfied by `Timex` (ctypes) and `TimexRaw` (fakes)."""

    @property
    def offset(self) -> int: ...
    @property
    def freq(self) -> int: ...
    @property
    def maxerror(self) -> int: ...
    @property
    def esterror(self) -> int: ...
    @property
    def status(self) -> int: ...
    @property
    def constant(self) -> int: ...
    @property
    def precision(self) -> int: ...
    @property
    def tolerance(self) -> int: ...
    @property
    def tick(self) -> int: ...
    @property
    def tai(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TimexRaw:
    """Raw `struct timex` values in kernel units, for fakes (FAULTS "FK").

    The defaults are a freshly booted kernel with no time daemon (C7): STA_UNSYNC,
    maxerror and esterror at the 16 s ceiling, tolerance 500 ppm, tick 10 000 µs.
    """

    offset: int = 0
    freq: int = 0
    maxerror: int = MAXERROR_CEILING_US
    esterror: int = MAXERROR_CEILING_US
    status: int = STA_UNSYNC
    constant: int = 2
    precision: int = 1
    tolerance: int = 500 * SCALED_PPM
    tick: int = 10_000
    tai: int = 0


@dataclass(frozen=True, slots=True)
class KernelClockState:
    """The kernel's NTP state, in timekit units (see the module docstring for signs).

    `maxerror_s` / `esterror_s` are `None` when the kernel value is negative or above
    the 16 s ceiling (garbage, C10); exactly 16 s means "no bound" and comes with
    STA_UNSYNC. `offset_s` is as the kernel reports it, unfiltered (one-off values like
    4 294 967 296 ns, C12, are for the analysis to judge).
    """

    state: TimeState
    return_code: int
    status_bits: int
    status_flags: tuple[str, ...]
    unsynchronized: bool  # STA_UNSYNC set or TIME_ERROR returned
    daemon_maintained: bool  # 0 <= maxerror < 16 s: a daemon has set it recently (C8)
    offset_s: float  # remaining phase correction; + means the clock is behind
    frequency_ppm: float  # frequency correction applied; + means the clock is sped up
    maxerror_s: float | None
    esterror_s: float | None
    tai_offset_s: int  # TAI − UTC
    tick_us: int
    constant: int
    precision_s: float
    tolerance_ppm: float
    leap_pending: LeapPending | None

    def summary(self) -> str:
        """One plain-English line, e.g.
        "kernel says: unsynchronized (STA_UNSYNC, TIME_ERROR); maxerror 16 s"."""
        if self.unsynchronized:
            reasons = [f for f in ("STA_UNSYNC",) if f in self.status_flags]
            if self.state == "TIME_ERROR":
                reasons.append("TIME_ERROR")
            head = f"kernel says: unsynchronized ({', '.join(reasons)})"
        else:
            modes = [f for f in ("STA_PLL", "STA_FLL", "STA_PPSTIME") if f in self.status_flags]
            head = f"kernel says: synchronized ({', '.join([self.state, *modes])})"
        parts = [head]
        if self.maxerror_s is None:
            parts.append("maxerror invalid")
        else:
            note = ""
            if self.unsynchronized and self.daemon_maintained:
                note = " (kept by a daemon: e.g. chronyd without rtcsync)"
            parts.append(f"maxerror {_fmt_s(self.maxerror_s)}{note}")
        if not self.unsynchronized or self.daemon_maintained:
            parts.append(f"offset {_fmt_s(self.offset_s, signed=True)}")
            parts.append(f"freq {self.frequency_ppm:+.3f} ppm")
            if self.esterror_s is not None:
                parts.append(f"esterror {_fmt_s(self.esterror_s)}")
        if self.tai_offset_s:
            parts.append(f"TAI-UTC {self.tai_offset_s} s")
        if self.leap_pending is not None:
            parts.append(f"leap second {self.leap_pending} pending")
        if self.state in ("TIME_OOP", "TIME_WAIT"):
            in_progress = self.state == "TIME_OOP"
            parts.append("leap second in progress" if in_progress else "leap second just occurred")
        return "; ".join(parts)


def _fmt_s(value_s: float, signed: bool = False) -> str:
    """Human duration: '16 s', '5 ms', '+12.3 µs'."""
    sign = "+" if signed else ""
    mag = abs(value_s)
    if mag >= 1 or mag == 0:
        return f"{value_s:{sign}g} s"
    if mag >= 1e-3:
        return f"{value_s * 1e3:{sign}.4g} ms"
    if mag >= 1e-6:
        return f"{value_s * 1e6:{sign}.4g} µs"
    return f"{value_s * 1e9:{sign}.4g} ns"


def _error_us_to_s(value_us: int) -> float | None:
    """Kernel error estimate in µs -> s; negative or beyond the 16 s ceiling -> None."""
    if value_us < 0 or value_us > MAXERROR_CEILING_US:
        return None
    return value_us / US_PER_S


def parse_timex(raw: TimexFields, return_code: int) -> KernelClockState:
    """Pure: raw `struct timex` fields + adjtimex return code -> `KernelClockState`.

    Raises `CollectorError` for a return code that is not a clock state (e.g. -1:
    the call failed; handle that before parsing, as `read_kernel_state` does).
    """
    state = TIME_STATES.get(return_code)
    if state is None:
        raise CollectorError(f"adjtimex returned {return_code}, not a clock state (0..5)")
    status = int(raw.status) & 0xFFFFFFFF
    flags = tuple(name for bit, name in STATUS_BITS.items() if status & bit)
    nano = bool(status & STA_NANO)
    offset_s = int(raw.offset) / (NS_PER_S if nano else US_PER_S)  # C11
    maxerror_us = int(raw.maxerror)
    leap: LeapPending | None = None
    if status & STA_INS:
        leap = "insert"
    elif status & STA_DEL:
        leap = "delete"
    return KernelClockState(
        state=state,
        return_code=return_code,
        status_bits=status,
        status_flags=flags,
        unsynchronized=bool(status & STA_UNSYNC) or state == "TIME_ERROR",
        daemon_maintained=0 <= maxerror_us < MAXERROR_CEILING_US,
        offset_s=offset_s,
        frequency_ppm=int(raw.freq) / SCALED_PPM,
        maxerror_s=_error_us_to_s(maxerror_us),
        esterror_s=_error_us_to_s(int(raw.esterror)),
        tai_offset_s=int(raw.tai),
        tick_us=int(raw.tick),
        constant=int(raw.constant),
        precision_s=int(raw.precision) / US_PER_S,
        tolerance_ppm=int(raw.tolerance) / SCALED_PPM,
        leap_pending=leap,
    )


_libc_fn: Callable[..., int] | None = None


def libc_adjtimex(buf: Timex) -> int:
    """Call libc `adjtimex(&buf)`; returns the clock state, raises `OSError` on -1.

    Raises `OSError(ENOSYS)` when libc has no `adjtimex` or this is not Linux.
    """
    global _libc_fn
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "adjtimex is Linux-only")
    if _libc_fn is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.adjtimex
        except (OSError, AttributeError) as exc:
            raise OSError(errno.ENOSYS, "libc has no adjtimex") from exc
        fn.argtypes = [ctypes.POINTER(Timex)]
        fn.restype = ctypes.c_int
        _libc_fn = fn
    rc = int(_libc_fn(ctypes.byref(buf)))
    if rc == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex: {errno.errorcode.get(err, err)}")
    return rc


def read_kernel_state(
    adjtimex_fn: Callable[[Timex], int] | None = None,
) -> KernelClockState | None:
    """Read the kernel clock state (modes = 0, read-only); `None` if unavailable.

    `adjtimex_fn(buf)` fills a zeroed `Timex` and returns the adjtimex return code,
    raising `OSError` on failure, like `libc_adjtimex` (the default). Returns `None`,
    without raising, on EPERM/EACCES/ENOSYS/EOPNOTSUPP, a negative return code or a
    non-Linux host (C13). Other errors raise `CollectorError`.
    """
    fn = adjtimex_fn if adjtimex_fn is not None else libc_adjtimex
    buf = Timex()  # zeroed: modes = 0 reads without changing anything
    try:
        rc = fn(buf)
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return None
        raise CollectorError(f"adjtimex failed: {exc}") from exc
    if rc < 0:
        return None
    return parse_timex(buf, rc)
