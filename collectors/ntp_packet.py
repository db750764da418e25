"""NTPv4 packet encoding and reply validation (RFC 5905), all in integer fixed point.

Instants stay integers end to end: an NTP timestamp is 32.32 fixed point since
1900; we widen it to an *unbounded* integer of 2**-32 s units (era included) by
pivoting on our own transmit time, so the 2036 rollover and a local clock past
2036 both work (FAULTS N29/N30). Offset and delay are computed exactly in those
units and converted to float seconds only at the end (N32).

The request carries nothing but mode 3, version 4 and a random 64-bit nonce in
the transmit field (RFC 9109 / chrony): our real send time never leaves the host,
and a reply is authentic only if its origin field echoes the nonce.

Validation order, each failure with its DESIGN.md error code:

    length < 48, not a multiple of 4, truncated ...... malformed      (keep waiting)
    mode != 4 ........................................ bad_mode       (keep waiting)
    version != request version ....................... bad_version    (keep waiting)
    origin != our nonce .............................. bogus_origin   (keep waiting)
    ---- from here on the reply is authentic: the verdict is final ----
    stratum 0 (kiss-o'-death) ........................ kod_rate / kod_deny / kod_rstr / kod_other
    leap 3 or stratum >= 16 .......................... unsynchronized
    transmit timestamp 0 ............................. zero_transmit
    receive 0, T3 < T2, T3-T2 > 4 s, reftime > T3 .... invalid
    root delay/2 + root dispersion >= 16 s ........... bad_root_distance
    delay < -(2**precision + 1 µs) ................... invalid (smaller negatives: noise, clamped to 0)
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import get_args

import ntplib

from timekit.units import FRAC_PER_S, NTP_ERA_S, ntp_fixed_to_unix_ns, unix_ns_to_ntp_fixed
from timekit.vocabulary import ErrorCode

NTP_HEADER_LEN = 48
NTP_VERSION = 4
MODE_CLIENT = 3
MODE_SERVER = 4
LEAP_UNSYNC = 3
MAX_STRATUM = 16
MAX_ROOT_DISTANCE_S = 16.0  # RFC 5905 MAXDISP; chrony rejects at >= as well
MAX_SERVER_INTERVAL_S = 4.0  # chrony MAX_SERVER_INTERVAL: T3 - T2 beyond this is bogus
LOCAL_PRECISION_S = 1e-6  # our clock reads and kernel stamps: well within 1 µs
MAX_TRUSTED_PRECISION_LOG2 = -16  # cap on the server's claimed precision for the delay clamp
KOD_CODES: dict[bytes, ErrorCode] = {b"RATE": "kod_rate", b"DENY": "kod_deny", b"RSTR": "kod_rstr"}

_HEADER = struct.Struct("!BBbbII4sQQQQ")

# Error codes (DESIGN.md). Codes after `duplicate` are additions, documented in README.
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)
# Errors that come from a packet we cannot attribute to our request: keep waiting for the real one.
NON_FINAL_ERRORS = frozenset({"malformed", "bad_mode", "bad_version", "bogus_origin", "nts_bad_auth",
                              "nts_nak"})


def new_nonce() -> int:
    """Random non-zero 64-bit transmit value for a request (never our clock)."""
    while True:
        nonce = secrets.randbits(64)
        if nonce:
            return nonce


def build_request(nonce: int, version: int = NTP_VERSION) -> bytes:
    """48-byte client request: LI 0, given VN, mode 3, all zero except the transmit nonce."""
    return _HEADER.pack((version << 3) | MODE_CLIENT, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, nonce)


def unwrap_timestamp(ts64: int, pivot_fixed: int) -> int:
    """A 64-bit NTP timestamp -> unbounded fixed point in the era nearest `pivot_fixed`."""
    era_fixed = NTP_ERA_S * FRAC_PER_S
    base = pivot_fixed - era_fixed // 2
    return base + ((ts64 - base) % era_fixed)


def short_to_s(value: int) -> float:
    """NTP short format (16.16 unsigned seconds) -> float seconds."""
    return value / 65536.0


@dataclass(frozen=True, slots=True)
class NtpHeader:
    """The decoded fields of a reply header; timestamps are raw 64-bit fixed point."""

    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay_s: float
    root_dispersion_s: float
    refid: bytes
    reference_ts: int
    origin_ts: int
    receive_ts: int
    transmit_ts: int

    @property
    def refid_text(self) -> str:
        """Refid for display/storage: ASCII code at stratum 0/1 (escaped), dotted quad above."""
        if self.stratum <= 1:
            return "".join(
                chr(b) if 32 <= b < 127 and chr(b) != "\\" else f"\\x{b:02x}"
                for b in self.refid.rstrip(b"\0")
            )
        return ".".join(str(b) for b in self.refid)

    @property
    def refid_description(self) -> str:
        """ntplib's plain-English name for a stratum-1 reference code (e.g. GPS)."""
        return str(ntplib.ref_id_to_text(int.from_bytes(self.refid, "big"), self.stratum))


def decode_header(data: bytes) -> NtpHeader:
    """Decode the first 48 bytes (caller checked the length)."""
    (b0, stratum, poll, precision, rdelay, rdisp, refid,
     ref_ts, org_ts, rec_ts, xmt_ts) = _HEADER.unpack_from(data)
    return NtpHeader(
        leap=b0 >> 6, version=(b0 >> 3) & 7, mode=b0 & 7, stratum=stratum, poll=poll,
        precision=precision, root_delay_s=short_to_s(rdelay), root_dispersion_s=short_to_s(rdisp),
        refid=refid, reference_ts=ref_ts, origin_ts=org_ts, receive_ts=rec_ts, transmit_ts=xmt_ts,
    )


@dataclass(frozen=True, slots=True)
class ReplyVerdict:
    """Outcome of validating one datagram against the request it should answer."""

    error: ErrorCode | None
    header: NtpHeader | None = None
    offset_s: float | None = None
    delay_s: float | None = None
    t2_ns: int | None = None
    t3_ns: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def final(self) -> bool:
        """True when this datagram settles the attempt (ok, or an authentic rejection)."""
        return self.error not in NON_FINAL_ERRORS


def _reject(code: ErrorCode, header: NtpHeader | None = None, detail: str = "") -> ReplyVerdict:
    return ReplyVerdict(error=code, header=header, detail=detail)


def validate_reply(
    data: bytes,
    *,
    nonce: int,
    t1_ns: int,
    t4_ns: int,
    truncated: bool = False,
    request_version: int = NTP_VERSION,
) -> ReplyVerdict:
    """Validate one reply datagram and, if it passes, compute offset and delay exactly.

    `t1_ns`/`t4_ns` are our CLOCK_REALTIME send/receive instants (Unix ns). Offset is
    θ = ((T2−T1)+(T3−T4))/2 and delay δ = (T4−T1)−(T3−T2), evaluated in 2**-32 s
    integer units, so sub-nanosecond fractions survive until the final division.
    """
    if truncated or len(data) < NTP_HEADER_LEN or len(data) % 4:
        return _reject("malformed", detail=f"{len(data)} bytes{' (truncated)' if truncated else ''}")
    h = decode_header(data)
    if h.mode != MODE_SERVER:
        return _reject("bad_mode", h, f"mode {h.mode}")
    if h.version != request_version:
        return _reject("bad_version", h, f"version {h.version}")
    if h.origin_ts != nonce:
        return _reject("bogus_origin", h, "origin does not echo our transmit nonce")
    if h.stratum == 0:
        code = h.refid.rstrip(b"\0")
        kiss = code.decode("ascii", "backslashreplace")
        return _reject(KOD_CODES.get(code, "kod_other"), h, f"kiss code {kiss}")
    if h.leap == LEAP_UNSYNC or h.stratum >= MAX_STRATUM:
        return _reject("unsynchronized", h, f"leap {h.leap} stratum {h.stratum}")
    if h.transmit_ts == 0:
        return _reject("zero_transmit", h)
    if h.receive_ts == 0:
        return _reject("invalid", h, "receive timestamp is zero")
    t1 = unix_ns_to_ntp_fixed(t1_ns)
    t4 = unix_ns_to_ntp_fixed(t4_ns)
    t2 = unwrap_timestamp(h.receive_ts, t1)
    t3 = unwrap_timestamp(h.transmit_ts, t2)
    if t3 < t2:
        return _reject("invalid", h, "server transmit before its receive (T3 < T2)")
    if t3 - t2 > MAX_SERVER_INTERVAL_S * FRAC_PER_S:
        return _reject("invalid", h, "server held the request over 4 s (T3 - T2)")
    if h.reference_ts and unwrap_timestamp(h.reference_ts, t3) > t3:
        return _reject("invalid", h, "reference timestamp later than transmit timestamp")
    root_distance_s = h.root_delay_s / 2 + h.root_dispersion_s
    if root_distance_s >= MAX_ROOT_DISTANCE_S:
        return _reject("bad_root_distance", h, f"root distance {root_distance_s:.3f} s")
    delay_fixed = (t4 - t1) - (t3 - t2)
    # Clock reads quantise both ends: a delay below zero by less than the server's stated
    # precision plus our own read granularity is measurement noise, clamped to 0 (RFC 5905
    # clamps at the precision); anything further below is a broken exchange.
    # (the server's precision field is untrusted: never allow more than 2**-16 s ~ 15 µs)
    server_precision_s = 2.0 ** min(h.precision, MAX_TRUSTED_PRECISION_LOG2)
    tolerance_fixed = int((server_precision_s + LOCAL_PRECISION_S) * FRAC_PER_S)
    if delay_fixed < -tolerance_fixed:
        return _reject("invalid", h, "negative round-trip delay")
    delay_fixed = max(delay_fixed, 0)
    offset2_fixed = (t2 - t1) + (t3 - t4)
    return ReplyVerdict(
        error=None, header=h,
        offset_s=offset2_fixed / (2 * FRAC_PER_S), delay_s=delay_fixed / FRAC_PER_S,
        t2_ns=ntp_fixed_to_unix_ns(t2), t3_ns=ntp_fixed_to_unix_ns(t3),
    )


def encode_reply(
    *,
    origin_ts: int,
    receive_ts: int,
    transmit_ts: int,
    reference_ts: int = 0,
    leap: int = 0,
    version: int = NTP_VERSION,
    mode: int = MODE_SERVER,
    stratum: int = 1,
    poll: int = 0,
    precision: int = -20,
    root_delay_s: float = 0.0,
    root_dispersion_s: float = 0.0,
    refid: bytes = b"LAB\0",
) -> bytes:
    """Encode a reply header (used by the lab's fault-injection server and by tests)."""
    def short(s: float) -> int:
        return min(max(round(s * 65536), 0), 0xFFFFFFFF)
    return _HEADER.pack(
        (leap << 6) | (version << 3) | mode, stratum, poll, precision,
        short(root_delay_s), short(root_dispersion_s), refid[:4].ljust(4, b"\0"),
        reference_ts, origin_ts, receive_ts, transmit_ts,
    )


def unix_ns_to_ts64(unix_ns: int) -> int:
    """Unix ns -> 64-bit on-the-wire NTP timestamp (era dropped)."""
    return unix_ns_to_ntp_fixed(unix_ns) & 0xFFFF_FFFF_FFFF_FFFF
