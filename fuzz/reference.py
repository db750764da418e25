"""An independent reading of RFC 5905's client-side checks, for the fuzzer to hold the validator to.

Written from the RFC and DESIGN.md's error table, not from `collectors/ntp_packet.py`: bytes are
sliced by offset, timestamps are exact Fractions of a second, eras are resolved by the nearest
value to the pivot. It answers (error code or None, offset, delay) for one datagram.
"""

from __future__ import annotations

from fractions import Fraction

ERA = 1 << 64  # one era of 64-bit timestamps, in 2**-32 s units
SCALE = Fraction(1, 1 << 32)
UNIX_TO_NTP_S = 2_208_988_800
KISS = {b"RATE": "kod_rate", b"DENY": "kod_deny", b"RSTR": "kod_rstr"}


def _u32(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _near(ts: int, pivot: Fraction) -> Fraction:
    """The value ts + k·2**64 (in 2**-32 s units) nearest `pivot` (seconds since 1900), as seconds."""
    p = pivot / SCALE
    k = round((p - ts) / ERA)
    best = min((ts + (k + d) * ERA for d in (-1, 0, 1)), key=lambda v: (abs(v - p), v))
    return best * SCALE


def reference(data: bytes, nonce: int, t1_ns: int, t4_ns: int, version: int = 4
              ) -> tuple[str | None, Fraction | None, Fraction | None]:
    """(error, offset s, delay s) of one reply by RFC 5905's rules, in DESIGN.md's order."""
    if len(data) < 48 or len(data) % 4 != 0:
        return "malformed", None, None
    leap, ver, mode = data[0] >> 6, (data[0] >> 3) & 7, data[0] & 7
    if mode != 4:
        return "bad_mode", None, None
    if ver != version:
        return "bad_version", None, None
    if int.from_bytes(data[24:32], "big") != nonce:
        return "bogus_origin", None, None
    stratum = data[1]
    if stratum == 0:
        return KISS.get(data[12:16].rstrip(b"\0"), "kod_other"), None, None
    if leap == 3 or stratum >= 16:
        return "unsynchronized", None, None
    xmt, rec, ref = (int.from_bytes(data[a:a + 8], "big") for a in (40, 32, 16))
    if xmt == 0:
        return "zero_transmit", None, None
    if rec == 0:
        return "invalid", None, None
    # our instants: Unix ns -> seconds since 1900, truncated to the 2**-32 s grid as on the wire
    t1 = Fraction(((t1_ns + UNIX_TO_NTP_S * 10**9) << 32) // 10**9, 1 << 32)
    t4 = Fraction(((t4_ns + UNIX_TO_NTP_S * 10**9) << 32) // 10**9, 1 << 32)
    t2 = _near(rec, t1)
    t3 = _near(xmt, t2)
    if t3 < t2 or t3 - t2 > 4:
        return "invalid", None, None
    if ref != 0 and _near(ref, t3) > t3:
        return "invalid", None, None
    root_distance = Fraction(_u32(data[4:8]), 1 << 17) + Fraction(_u32(data[8:12]), 1 << 16)
    if root_distance >= 16:
        return "bad_root_distance", None, None
    delay = (t4 - t1) - (t3 - t2)
    precision = int.from_bytes(data[3:4], "big", signed=True)
    tolerance = Fraction(2) ** min(precision, -16) + Fraction(1, 10**6)
    if delay < -tolerance:
        return "invalid", None, None
    return None, ((t2 - t1) + (t3 - t4)) / 2, max(delay, Fraction(0))


def near_a_boundary(data: bytes, t1_ns: int, t4_ns: int) -> bool:
    """True when the delay lies within 2 units (2**-32 s) of the clamp's tolerance: there the
    validator's float tolerance and this exact one may round to different sides, legitimately."""
    if len(data) < 48:
        return False
    rec, xmt = (int.from_bytes(data[a:a + 8], "big") for a in (32, 40))
    t1 = Fraction(((t1_ns + UNIX_TO_NTP_S * 10**9) << 32) // 10**9, 1 << 32)
    t4 = Fraction(((t4_ns + UNIX_TO_NTP_S * 10**9) << 32) // 10**9, 1 << 32)
    t2 = _near(rec, t1)
    t3 = _near(xmt, t2)
    precision = int.from_bytes(data[3:4], "big", signed=True)
    tolerance = Fraction(2) ** min(precision, -16) + Fraction(1, 10**6)
    return abs(((t4 - t1) - (t3 - t2)) + tolerance) <= 2 * SCALE
