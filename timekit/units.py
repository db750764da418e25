"""Unit constants and conversions, in one place (instants are int ns, durations float s)."""

from __future__ import annotations

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000
PPM = 1e-6

# NTP timestamps count seconds since 1900-01-01; Unix since 1970-01-01.
NTP_UNIX_DELTA_S = 2_208_988_800
NTP_ERA_S = 1 << 32  # one NTP era: 2**32 seconds (~136 years)
FRAC_PER_S = 1 << 32  # NTP fixed point: 2**32 fractional units per second


def unix_ns_to_ntp_fixed(unix_ns: int) -> int:
    """Unix-epoch ns -> unbounded NTP fixed point (2**-32 s units since 1900, no era wrap)."""
    return ((unix_ns + NTP_UNIX_DELTA_S * NS_PER_S) << 32) // NS_PER_S


def ntp_fixed_to_unix_ns(fixed: int) -> int:
    """Unbounded NTP fixed point -> Unix-epoch ns (rounded to nearest ns)."""
    return ((fixed * NS_PER_S + (1 << 31)) >> 32) - NTP_UNIX_DELTA_S * NS_PER_S


_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_duration_s(text: str) -> float:
    """'90', '90s', '15m', '2h', '7d', '250ms' -> seconds; ValueError naming the text otherwise."""
    t = text.strip().lower()
    unit = next((u for u in sorted(_DURATION_UNITS, key=len, reverse=True) if t.endswith(u)), "")
    number = t[: len(t) - len(unit)].strip() if unit else t
    try:
        value = float(number) * _DURATION_UNITS.get(unit, 1.0)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 15m, 2h, 7d)") from None
    if not 0 <= value < 1e10:  # also rejects nan and inf
        raise ValueError(f"duration out of range: {text!r}")
    return value


def fmt_s(value: float | None, signed: bool = True) -> str:
    """Seconds with a readable unit: 1.234 ms, -56.7 µs, 2.500 s."""
    if value is None:
        return "-"
    a = abs(value)
    sign = "+" if signed and value >= 0 else ("-" if value < 0 else "")
    if a >= 1:
        return f"{sign}{a:.3f} s"
    if a >= 1e-3:
        return f"{sign}{a * 1e3:.3f} ms"
    return f"{sign}{a * 1e6:.1f} µs"
