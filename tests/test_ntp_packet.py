"""Known-truth tests of the NTP codec: exact integer maths, eras, and every validation rule."""

from __future__ import annotations

import struct

import pytest

from timekit.collectors.ntp_packet import (
    ERROR_CODES,
    build_request,
    encode_reply,
    unix_ns_to_ts64,
    unwrap_timestamp,
    validate_reply,
)
from timekit.units import FRAC_PER_S, NS_PER_S, NTP_UNIX_DELTA_S, unix_ns_to_ntp_fixed

NONCE = 0x0123_4567_89AB_CDEF
T1 = 1_795_671_931_903_889_200  # 2026-11-26, Unix ns


def reply_for(t1_ns: int, offset_ns: int, delay_ns: int, **fields: object) -> tuple[bytes, int]:
    """A reply from a server `offset_ns` ahead over a symmetric path of `delay_ns`; returns (bytes, t4)."""
    t2 = t1_ns + delay_ns // 2 + offset_ns
    t3 = t2 + 1000
    t4 = t1_ns + delay_ns + 1000
    base = dict(origin_ts=NONCE, receive_ts=unix_ns_to_ts64(t2), transmit_ts=unix_ns_to_ts64(t3),
                reference_ts=unix_ns_to_ts64(t3 - 10 * NS_PER_S))
    base.update(fields)
    return encode_reply(**base), t4  # type: ignore[arg-type]


def test_request_is_mode3_v4_and_leaks_nothing_but_the_nonce() -> None:  # T7
    req = build_request(NONCE)
    assert len(req) == 48
    assert req[0] == 0x23  # LI 0, VN 4, mode 3
    assert req[1:40] == bytes(39)  # stratum, poll, precision, root fields, refid, ref, org, rec
    assert struct.unpack("!Q", req[40:])[0] == NONCE


def test_server_ahead_gives_positive_offset() -> None:  # FAULTS N31
    data, t4 = reply_for(T1, offset_ns=250_000_000, delay_ns=40_000)
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4)
    assert v.ok, v
    assert v.offset_s == pytest.approx(0.250, abs=2e-9)
    assert v.delay_s == pytest.approx(40e-6, abs=2e-9)


def test_server_behind_gives_negative_offset() -> None:
    data, t4 = reply_for(T1, offset_ns=-1_000_000_000, delay_ns=0)
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4)
    assert v.offset_s == pytest.approx(-1.0, abs=2e-9)


def test_sub_nanosecond_fractions_survive() -> None:  # FAULTS N32
    # T1 and T4 exactly representable; T2/T3 differ from them by units of 2**-32 s.
    t1_fixed = unix_ns_to_ntp_fixed(T1)
    t1_ns_exact = T1
    t4_ns = T1 + 1_000_000
    t4_fixed = unix_ns_to_ntp_fixed(t4_ns)
    t2_fixed = t1_fixed + 7  # 7 units of 2**-32 s after T1
    t3_fixed = t4_fixed - 3
    data = encode_reply(origin_ts=NONCE, receive_ts=t2_fixed & (2**64 - 1),
                        transmit_ts=t3_fixed & (2**64 - 1))
    v = validate_reply(data, nonce=NONCE, t1_ns=t1_ns_exact, t4_ns=t4_ns)
    assert v.offset_s == (7 - 3) / 2 / FRAC_PER_S  # exact: 2 units = 4.66e-10 s
    expected_delay_fixed = (t4_fixed - t1_fixed) - (t3_fixed - t2_fixed)
    assert v.delay_s == expected_delay_fixed / FRAC_PER_S


def test_era_pivot_2036() -> None:  # FAULTS N29, N30: local clock and server both past 2036-02-07
    t1 = (2**32 - NTP_UNIX_DELTA_S + 1000) * NS_PER_S  # 1000 s into NTP era 1
    data, t4 = reply_for(t1, offset_ns=5_000_000, delay_ns=20_000)
    v = validate_reply(data, nonce=NONCE, t1_ns=t1, t4_ns=t4)
    assert v.ok
    assert v.offset_s == pytest.approx(0.005, abs=2e-9)  # not 4.29e9 s
    assert v.t2_ns is not None and abs(v.t2_ns - t1) < NS_PER_S


def test_era_pivot_across_rollover() -> None:  # server in era 1, local clock 1 s before rollover
    t1 = (2**32 - NTP_UNIX_DELTA_S - 1) * NS_PER_S
    data, t4 = reply_for(t1, offset_ns=2 * NS_PER_S, delay_ns=0)
    v = validate_reply(data, nonce=NONCE, t1_ns=t1, t4_ns=t4)
    assert v.offset_s == pytest.approx(2.0, abs=2e-9)


def test_unwrap_picks_nearest_era() -> None:
    era = 2**32 * FRAC_PER_S
    pivot = 3 * era + 10
    assert unwrap_timestamp(5, pivot) == 3 * era + 5
    assert unwrap_timestamp(era - 5, pivot) == 3 * era - 5


@pytest.mark.parametrize(
    ("fields", "truncated", "tail", "code"),
    [
        ({}, False, b"", None),
        ({}, False, b"\0" * 20, None),  # N3: 68 bytes, extension/MAC tail ignored
        ({}, True, b"", "malformed"),  # N4: MSG_TRUNC
        ({}, False, b"\0\0", "malformed"),  # N2: 50 bytes
        ({"mode": 3}, False, b"", "bad_mode"),  # N5
        ({"mode": 5}, False, b"", "bad_mode"),
        ({"version": 5}, False, b"", "bad_version"),  # N6
        ({"version": 3}, False, b"", "bad_version"),
        ({"origin_ts": NONCE ^ (1 << 40)}, False, b"", "bogus_origin"),  # N7 hi bits
        ({"origin_ts": NONCE ^ 1}, False, b"", "bogus_origin"),  # N7 lo bits
        ({"origin_ts": 0}, False, b"", "bogus_origin"),  # N8
        ({"stratum": 0, "leap": 3, "refid": b"RATE"}, False, b"", "kod_rate"),  # N14
        ({"stratum": 0, "leap": 3, "refid": b"DENY"}, False, b"", "kod_deny"),  # N17
        ({"stratum": 0, "leap": 3, "refid": b"RSTR"}, False, b"", "kod_rstr"),
        ({"stratum": 0, "refid": b"XFOO"}, False, b"", "kod_other"),  # N18
        ({"stratum": 0, "leap": 3, "refid": b"RATE", "origin_ts": 42}, False, b"", "bogus_origin"),  # N15
        ({"leap": 3, "stratum": 2}, False, b"", "unsynchronized"),  # N19
        ({"stratum": 16}, False, b"", "unsynchronized"),  # N20
        ({"stratum": 255}, False, b"", "unsynchronized"),
        ({"transmit_ts": 0}, False, b"", "zero_transmit"),  # N21
        ({"receive_ts": 0}, False, b"", "invalid"),
        ({"root_dispersion_s": 20.0}, False, b"", "bad_root_distance"),  # N25
        # root distance exactly 16.0 s: the boundary is inclusive
        ({"root_delay_s": 2.0, "root_dispersion_s": 15.0}, False, b"", "bad_root_distance"),
        ({"root_delay_s": 1.0, "root_dispersion_s": 14.0}, False, b"", None),  # 14.5 s: sane
    ],
)
def test_validation_codes(fields: dict, truncated: bool, tail: bytes, code: str | None) -> None:
    data, t4 = reply_for(T1, offset_ns=1_000_000, delay_ns=100_000, **fields)
    v = validate_reply(data + tail, nonce=NONCE, t1_ns=T1, t4_ns=t4, truncated=truncated)
    assert v.error == code, v.detail
    assert code is None or code in ERROR_CODES
    if code is not None:
        assert v.offset_s is None and v.delay_s is None  # a rejected reply is never used


@pytest.mark.parametrize("length", [0, 1, 47])
def test_short_packets_are_malformed(length: int) -> None:  # N1
    data, t4 = reply_for(T1, 0, 0)
    assert validate_reply(data[:length], nonce=NONCE, t1_ns=T1, t4_ns=t4).error == "malformed"


def test_header_inconsistencies_are_invalid() -> None:  # N22, N23, N27
    t2, t3 = T1 + 10_000, T1 + 5_000
    bad = [
        dict(receive_ts=unix_ns_to_ts64(t2), transmit_ts=unix_ns_to_ts64(t3)),  # T3 < T2
        dict(receive_ts=unix_ns_to_ts64(T1), transmit_ts=unix_ns_to_ts64(T1 + 5 * NS_PER_S)),  # T3-T2 > 4 s
        dict(receive_ts=unix_ns_to_ts64(T1), transmit_ts=unix_ns_to_ts64(T1 + 1000),
             reference_ts=unix_ns_to_ts64(T1 + 3600 * NS_PER_S)),  # reftime after T3
    ]
    for f in bad:
        v = validate_reply(encode_reply(origin_ts=NONCE, **f), nonce=NONCE, t1_ns=T1,
                           t4_ns=T1 + 10 * NS_PER_S)
        assert v.error == "invalid", f


def test_negative_delay_is_invalid() -> None:  # N24: T4 < T1 after a realtime step
    data, _ = reply_for(T1, 0, 0)
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=T1 - NS_PER_S)
    assert v.error == "invalid"


def test_tiny_negative_delay_within_precision_is_clamped() -> None:
    # server precision 2**-20 s = 0.95 µs, + 1 µs ours: -1.5 µs is quantisation noise
    data, t4 = reply_for(T1, offset_ns=0, delay_ns=0, precision=-20)
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4 - 1_500)
    assert v.ok and v.delay_s == 0.0
    assert v.offset_s == pytest.approx(750e-9, abs=1e-9)  # half the 1.5 µs shortfall
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4 - 3_000)  # beyond 1.95 µs
    assert v.error == "invalid"


def test_non_final_errors_keep_waiting_and_authentic_ones_settle() -> None:
    data, t4 = reply_for(T1, 0, 0, origin_ts=7)
    assert not validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4).final
    data, t4 = reply_for(T1, 0, 0, stratum=0, refid=b"RATE")
    assert validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4).final


def test_refid_text_escapes_weird_bytes() -> None:  # N33
    data, t4 = reply_for(T1, 0, 0, stratum=1, refid=b"=cm\xff")
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=t4)
    assert v.header is not None and v.header.refid_text == "=cm\\xff"


def test_large_ns_instants_roundtrip_through_fixed_point() -> None:  # C15
    from timekit.units import ntp_fixed_to_unix_ns

    for t in (T1, 0, 2**62, (2**32 - NTP_UNIX_DELTA_S) * NS_PER_S + 1):
        assert ntp_fixed_to_unix_ns(unix_ns_to_ntp_fixed(t)) == t


def test_server_cannot_buy_a_big_negative_delay_with_its_precision_field() -> None:
    # precision +2 would claim 4 s of slack: a 3.9 s server hold would pass as delay 0
    t2 = T1
    t3 = T1 + 3_900_000_000
    data = encode_reply(origin_ts=NONCE, receive_ts=unix_ns_to_ts64(t2), transmit_ts=unix_ns_to_ts64(t3),
                        precision=2)
    v = validate_reply(data, nonce=NONCE, t1_ns=T1, t4_ns=T1 + 10_000)
    assert v.error == "invalid"


def test_json_names_the_header_codes_with_ntplibs_tables() -> None:
    """`sample ntp` and `collect` JSON say what leap, stratum and a primary refid mean, in ntplib's
    words; what its table does not know, an escaped refid, a kiss code or an address stay as they are."""
    from timekit.samples import NtpSample

    def words(**kw: object) -> tuple[object, object, object]:
        d = NtpSample("a", True, None, 1, **kw).described()  # type: ignore[arg-type]
        return d["leap_text"], d["stratum_text"], d["refid_text"]

    gps = ("no warning", "primary reference (1)", "Global Position System")
    assert words(leap=0, stratum=1, refid="GPS") == gps
    assert words(leap=0, stratum=1, refid="PPS")[2] == "Generic pulse-per-second"
    assert words(leap=1, stratum=1, refid="XYZ") == ("last minute of the day has 61 seconds",
                                                     "primary reference (1)", "XYZ")
    assert words(leap=3, stratum=1, refid="=cm\\xff")[2] == "=cm\\xff"  # escaped bytes: as stored
    # four raw bytes (chrony's local clock, 7F7F0101): ntpd's pseudo-address 127.127.t.u
    assert words(leap=0, stratum=1, refid="\\x7f\\x7f\\x01\\x01")[2] == "127.127.1.1"
    assert words(leap=0, stratum=2, refid="10.0.0.1") == ("no warning", "secondary reference (2)", "10.0.0.1")
    unsync = ("unknown (clock unsynchronized)", "unsynchronized (16)")
    assert words(leap=3, stratum=16, refid="INIT")[:2] == unsync
    assert words() == (None, None, None)  # a failed attempt has no header
    # ntplib's own table breaks on 0 and raises on reserved strata: a stored KoD or a bad reply must
    # still print (a KoD DENY's attempt is stored with its header: `sample ntp --json` died on it)
    assert words(leap=3, stratum=0, refid="DENY") == ("unknown (clock unsynchronized)",
                                                      "unspecified or invalid (0: kiss-o'-death)", "DENY")
    assert words(stratum=17)[1] == "reserved (17)" and words(stratum=255)[1] == "reserved (255)"
