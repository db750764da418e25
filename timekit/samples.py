"""Value types for stored samples. Instants are int ns (`_ns`), durations float s (`_s`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from timekit.vocabulary import ErrorCode


@dataclass(frozen=True, slots=True)
class NtpSample:
    """One NTP query attempt, ok or not. The first ten fields are the DESIGN.md JSON contract."""

    server: str
    ok: bool
    error: ErrorCode | None
    t_local_ns: int  # CLOCK_REALTIME when the reply arrived (or the attempt ended)
    offset_s: float | None = None  # reference - local
    delay_s: float | None = None
    stratum: int | None = None
    leap: int | None = None
    root_delay_s: float | None = None
    root_dispersion_s: float | None = None
    address: str | None = None  # resolved ip:port actually queried
    refid: str | None = None
    version: int | None = None
    poll: int | None = None
    precision: int | None = None
    t1_ns: int | None = None  # our send instant (never sent on the wire)
    t2_ns: int | None = None  # server receive
    t3_ns: int | None = None  # server transmit
    t4_ns: int | None = None  # our receive instant (kernel timestamp when available)
    rx_timestamp: str | None = None  # 'kernel' (SO_TIMESTAMPNS) or 'user'
    rx_latency_ns: int | None = None  # user-space read minus kernel receive timestamp
    timeout_s: float | None = None  # the adaptive timeout this attempt used
    detail: str | None = None  # why it was rejected, in words
    boottime_ns: int | None = None  # CLOCK_BOOTTIME at t_local_ns: ages evidence across steps/suspend
    boot_id: str | None = None  # kernel boot id: boottime is only comparable within one boot
    tx_timestamp: str | None = None  # T1 from: 'kernel' (SO_TIMESTAMPING software transmit) or 'user'
    tx_latency_ns: int | None = None  # kernel transmit stamp minus the user-space read before send
    monotonic_ns: int | None = None  # CLOCK_MONOTONIC at T4 (slewed by the kernel, as realtime is)
    raw_ns: int | None = None  # CLOCK_MONOTONIC_RAW at T4 (never slewed): monotonic - raw moves by slews
    authenticated: bool = False  # NTS-verified (RFC 8915): its identifier and authenticator checked

    @property
    def root_distance_s(self) -> float | None:
        """delay/2 + root delay/2 + root dispersion: the half-width this sample vouches for."""
        if self.delay_s is None or self.root_delay_s is None or self.root_dispersion_s is None:
            return None
        return self.delay_s / 2 + self.root_delay_s / 2 + self.root_dispersion_s

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (its values are plain scalars: no deep copy needed)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def described(self) -> dict[str, Any]:
        """`to_dict` plus ntplib's words for the header (the JSON of `sample ntp` and `collect`):
        `leap_text` ('no warning', 'add second', ...), `stratum_text` ('secondary reference (2)'),
        `refid_text` (a primary reference's source by name, 'Global Position System'; a code not in
        ntplib's table, a kiss code or an address as it is). None where the reply had no header."""
        import ntplib

        doc = self.to_dict()
        doc["leap_text"] = None if self.leap is None else ntplib.leap_to_text(self.leap)
        doc["stratum_text"] = None if self.stratum is None else _stratum_words(self.stratum)
        doc["refid_text"] = self.refid
        if self.refid is not None and self.stratum == 1 and self.refid.isascii() and "\\" not in self.refid:
            code = self.refid.encode("ascii")[:4].ljust(4, b"\0")
            named = str(ntplib.ref_id_to_text(int.from_bytes(code, "big"), 1))
            doc["refid_text"] = self.refid if named.startswith("Unidentified") else named  # not in its table
        elif self.refid is not None and self.stratum == 1 and self.refid.startswith("\\x"):
            # not a source name but four bytes, e.g. chrony's local clock 7F7F0101: ntpd's 127.127.t.u
            raw = self.refid.encode("ascii").decode("unicode_escape").encode("latin-1")
            if len(raw) == 4:
                doc["refid_text"] = ".".join(str(b) for b in raw)
        return doc

    @classmethod
    def column_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_FIELDS = NtpSample.column_names()


def _stratum_words(stratum: int) -> str:
    """ntplib's words for a stratum; its table breaks on 0 (a kiss-o'-death: no % in the text) and
    raises on 17-255 (reserved), which a reply may carry all the same."""
    import ntplib

    if stratum == 0:
        return f"{ntplib.NTP.STRATUM_TABLE[0]} (0: kiss-o'-death)"
    try:
        return str(ntplib.stratum_to_text(stratum))
    except (ntplib.NTPException, KeyError, TypeError, ValueError):
        return f"reserved ({stratum})"
