"""What the host's own time daemon (chronyd, ntpd/ntpsec, systemd-timesyncd) says, in timekit's units.

The adapters in `collectors/time_daemon.py` convert each daemon's numbers once: offsets are
reference − local in s (NTP's sign: positive = this clock is behind), rates are the local
clock's in ppm (positive = it gains), instants int ns. Nothing here is trusted: it is what the
daemon *claims*, which `analysis/time_daemon.py` checks against timekit's own measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

DaemonKind = Literal["chronyd", "ntpd", "timesyncd"]
DAEMON_KINDS: tuple[DaemonKind, ...] = ("chronyd", "ntpd", "timesyncd")

# What the daemon makes of one source, in one vocabulary for every daemon (chrony's state column,
# ntpq's tally code): the daemon follows a 'selected' source and averages the 'combined' ones.
SourceState = Literal["selected", "combined", "not_combined", "falseticker", "jittery", "unusable",
                      "candidate", "backup", "excess", "rejected", "unknown"]


@dataclass(frozen=True)
class DaemonSource:
    """One of the daemon's sources as the daemon sees it.

    `offset_s`: the source's time − this host's clock (CLOCK_REALTIME, as the daemon measured it at
    its last sample), so it compares with an `NtpSample.offset_s` of the same server. `error_s`: the
    daemon's own ± on that measurement (chrony's "+/-"; ntpd's jitter).
    """

    address: str
    state: SourceState
    stratum: int | None = None
    poll: int | None = None  # log2 s
    reach: int | None = None  # the 8-bit reach register (377 octal = 255: the last 8 polls answered)
    last_rx_s: float | None = None  # seconds since the last usable sample
    offset_s: float | None = None
    error_s: float | None = None
    delay_s: float | None = None  # ntpd's round-trip delay (chrony's is not in `sources`)
    frequency_ppm: float | None = None  # chrony sourcestats: residual rate of the local clock vs it
    freq_skew_ppm: float | None = None
    std_dev_s: float | None = None
    n_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DaemonSample:
    """One reading of the daemon's state, with the host's clocks read around it.

    `offset_s` is the daemon's estimate of reference − local *now* (chrony's "system time" offset:
    what it has still to slew out), `root_delay_s`/`root_dispersion_s` its error budget:
    the daemon claims true time lies within `offset_s ± claimed_bound_s` of this clock.
    None where the daemon does not say (timesyncd reports no offset).
    """

    daemon: DaemonKind
    t_local_ns: int  # CLOCK_REALTIME in the middle of the reading (the clocks are read before and after)
    synchronized: bool  # what the daemon claims (leap status not 'unsynchronised', stratum < 16)
    boottime_ns: int | None = None
    monotonic_ns: int | None = None
    raw_ns: int | None = None
    boot_id: str | None = None
    read_span_ns: int | None = None  # how long the reading took (the daemon answered inside it)
    leap: str | None = None  # 'normal', 'insert', 'delete', 'unsynchronised'
    stratum: int | None = None
    ref_id: str | None = None  # 32-bit reference id, 8 hex digits
    ref_name: str | None = None  # the selected source's address or name, as the daemon gives it
    ref_time_ns: int | None = None  # when the daemon last updated its clock from a source
    offset_s: float | None = None
    root_delay_s: float | None = None
    root_dispersion_s: float | None = None
    frequency_ppm: float | None = None  # the local oscillator's rate error the daemon corrects
    residual_freq_ppm: float | None = None
    skew_ppm: float | None = None  # the daemon's error bound on that frequency
    rms_offset_s: float | None = None
    jitter_s: float | None = None
    update_interval_s: float | None = None  # the daemon's poll of its reference
    kernel_maxerror_s: float | None = None  # adjtimex maxerror at the reading (None: unavailable)
    kernel_esterror_s: float | None = None
    kernel_unsynchronized: bool | None = None  # adjtimex STA_UNSYNC
    sources: tuple[DaemonSource, ...] = field(default=())

    @property
    def claimed_bound_s(self) -> float | None:
        """The daemon's own bound on |true time − its estimate|: root delay/2 + root dispersion
        (chrony's documented clock_error bound less |system time|, which is the centre here)."""
        if self.root_delay_s is None or self.root_dispersion_s is None:
            return None
        return self.root_delay_s / 2 + self.root_dispersion_s

    @property
    def selected(self) -> DaemonSource | None:
        """The source the daemon follows (None: it follows none)."""
        return next((s for s in self.sources if s.state == "selected"), None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        out["claimed_bound_s"] = self.claimed_bound_s
        out["sources"] = [s.to_dict() for s in self.sources]
        return out


SAMPLE_COLUMNS = tuple(f.name for f in fields(DaemonSample) if f.name != "sources")
SOURCE_COLUMNS = tuple(f.name for f in fields(DaemonSource))
