"""The fuzz targets: one input (bytes from the fuzzer) -> one call, invariants asserted.

`reply`: the fuzzer's bytes choose a datagram and the exchange around it (our nonce, T1, T4), often
echoing the nonce and placing T1/T4 near the packet's own timestamps so that inputs get past the
authenticity checks into the arithmetic. `validate_reply` must never raise, and must agree with the
independent reference (`fuzz.reference`) on the error code; on an accepted reply, offset and delay
must equal the reference's exact values within 1 ns. A disagreement raises: the fuzzer reports it.

`address`: `parse_server` on arbitrary text either raises UsageError (one line, ASCII-safe repr) or
returns an address that is ASCII, has a port in 1-65535, and parses back to itself.
"""

from __future__ import annotations

from fractions import Fraction

import atheris

with atheris.instrument_imports():
    from timekit.address import parse_server
    from timekit.collectors.ntp_packet import validate_reply
    from timekit.errors import UsageError

from fuzz.reference import near_a_boundary, reference

UNIX_TO_NTP_S = 2_208_988_800
NOW_NS = 1_796_000_000_000_000_000  # a 2026 instant; the fuzzer moves T1 around it (and far away)


class Disagreement(AssertionError):
    """timekit and the reference disagree about a reply: a wrongly accepted or rejected one."""


def _ts64(unix_ns: int) -> int:
    return (((unix_ns + UNIX_TO_NTP_S * 10**9) << 32) // 10**9) & 0xFFFF_FFFF_FFFF_FFFF


def reply_input(data: bytes) -> tuple[bytes, int, int, int]:
    """(datagram, nonce, t1_ns, t4_ns) chosen by the fuzzer's bytes.

    A quarter of inputs are raw bytes of any length; the rest are structured replies whose fields
    the fuzzer picks (lengths a multiple of 4, mostly 48; the nonce mostly echoed; leap, stratum,
    precision, root delay and dispersion over their whole ranges, biased to plausible values;
    T2/T3/reference near T1..T4 or anywhere), so that the arithmetic and every rejection are reached.
    """
    fdp = atheris.FuzzedDataProvider(data)
    shape = fdp.ConsumeIntInRange(0, 7)
    far = fdp.ConsumeIntInRange(0, 15) == 0  # T1 anywhere in ±146 years (eras, the 2036 rollover)
    t1_ns = NOW_NS + (fdp.ConsumeIntInRange(-(1 << 62), 1 << 62) if far
                      else fdp.ConsumeIntInRange(-10**12, 10**12))
    t4_ns = t1_ns + fdp.ConsumeIntInRange(-10**7, 10**10)
    nonce = fdp.ConsumeIntInRange(0, (1 << 64) - 1)
    if shape < 2:
        raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 96))
        return raw, nonce, t1_ns, t4_ns
    leap = 3 if fdp.ConsumeIntInRange(0, 15) == 0 else fdp.ConsumeIntInRange(0, 2)
    version = 4 if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeIntInRange(0, 7)
    mode = 4 if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeIntInRange(0, 7)
    stratum = fdp.ConsumeIntInRange(1, 15) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 255)
    poll = fdp.ConsumeIntInRange(-128, 127)
    precision = (fdp.ConsumeIntInRange(-32, 0) if fdp.ConsumeIntInRange(0, 7)
                 else fdp.ConsumeIntInRange(-128, 127))
    small = fdp.ConsumeIntInRange(0, 3) != 0
    rdelay = fdp.ConsumeIntInRange(0, 1 << 16) if small else fdp.ConsumeIntInRange(0, (1 << 32) - 1)
    rdisp = fdp.ConsumeIntInRange(0, 1 << 16) if small else fdp.ConsumeIntInRange(0, (1 << 32) - 1)
    refid = (b"RATE", b"DENY", b"RSTR", b"LAB\0")[fdp.ConsumeIntInRange(0, 3)] if fdp.ConsumeBool() \
        else fdp.ConsumeBytes(4).ljust(4, b"\0")
    origin = nonce if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeIntInRange(0, (1 << 64) - 1)
    if shape < 4:  # timestamps anywhere
        ref, rec, xmt = (fdp.ConsumeIntInRange(0, (1 << 64) - 1) for _ in range(3))
    else:  # T2 near T1, T3 after T2 by up to 5 s (or a little before), the reference before T3
        t2 = t1_ns + fdp.ConsumeIntInRange(-10**10, 10**10)
        t3 = t2 + fdp.ConsumeIntInRange(-10**6, 5 * 10**9)
        rec, xmt = _ts64(t2), _ts64(t3)
        ref = 0 if fdp.ConsumeBool() else _ts64(t3 - fdp.ConsumeIntInRange(-10**9, 10**12))
        if fdp.ConsumeIntInRange(0, 31) == 0:
            rec = 0
        if fdp.ConsumeIntInRange(0, 31) == 0:
            xmt = 0
    packet = bytes([(leap << 6) | (version << 3) | mode, stratum, poll & 0xFF, precision & 0xFF])
    packet += rdelay.to_bytes(4, "big") + rdisp.to_bytes(4, "big") + refid
    packet += b"".join(v.to_bytes(8, "big") for v in (ref, origin, rec, xmt))
    extra = fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeIntInRange(0, 7) == 0 else 0
    packet += fdp.ConsumeBytes(4 * extra).ljust(4 * extra, b"\0")
    return packet, nonce, t1_ns, t4_ns


def check_reply(data: bytes) -> None:
    packet, nonce, t1_ns, t4_ns = reply_input(data)
    got = validate_reply(packet, nonce=nonce, t1_ns=t1_ns, t4_ns=t4_ns)
    want, offset, delay = reference(packet, nonce, t1_ns, t4_ns)
    if got.error != want:
        if {got.error, want} <= {None, "invalid"} and near_a_boundary(packet, t1_ns, t4_ns):
            return  # the delay clamp's edge: float vs exact tolerance, within 2**-31 s
        raise Disagreement(f"timekit {got.error!r} vs reference {want!r} for {packet.hex()} "
                           f"nonce={nonce} t1={t1_ns} t4={t4_ns}")
    if want is None:
        assert offset is not None and delay is not None and got.offset_s is not None
        assert got.delay_s is not None
        if abs(Fraction(got.offset_s) - offset) > Fraction(1, 10**9) * max(1, abs(offset)) or \
                abs(Fraction(got.delay_s) - delay) > Fraction(1, 10**9) * max(1, abs(delay)):
            raise Disagreement(f"offset/delay {got.offset_s!r}/{got.delay_s!r} vs {float(offset)!r}/"
                               f"{float(delay)!r} for {packet.hex()}")


def check_address(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    try:
        server = parse_server(text)
    except UsageError as exc:
        message = str(exc)
        assert "\n" not in message and "\x00" not in message, repr(message)
        return
    name = server.name
    assert name.isascii() and name.isprintable() and " " not in name, repr(name)
    assert 1 <= server.port <= 65535
    assert parse_server(name) == server, (text, name)


TARGETS = {"reply": check_reply, "address": check_address}
