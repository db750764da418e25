"""timekit.collectors.adjtimex: fake kernel states (FAULTS C7-C14) and one real read."""

from __future__ import annotations

import ctypes
import errno
import os
import sys

import pytest

from timekit.collectors import adjtimex as ax
from timekit.collectors.adjtimex import (
    STA_DEL,
    STA_INS,
    STA_NANO,
    STA_PLL,
    STA_UNSYNC,
    Timex,
    TimexRaw,
    parse_timex,
    read_kernel_state,
)
from timekit.errors import CollectorError

SCALED_PPM = 65_536


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_long) != 8, reason="layout pinned for LP64 Linux")
def test_struct_timex_layout_lp64() -> None:
    # glibc x86_64/aarch64: int modes (+4 pad), 4 longs, int status (+4 pad), 3 longs,
    # timeval (16), 3 longs, int shift (+4 pad), 5 longs, int tai, 11 × int :32.
    assert ctypes.sizeof(Timex) == 208
    assert Timex.offset.offset == 8
    assert Timex.status.offset == 40
    assert Timex.time.offset == 72
    assert Timex.tick.offset == 88
    assert Timex.tai.offset == 160


def test_c7_no_daemon_time_error_unsync_16s() -> None:
    st = parse_timex(
        TimexRaw(status=STA_UNSYNC, maxerror=16_000_000, esterror=16_000_000), return_code=5
    )
    assert st.state == "TIME_ERROR"
    assert st.unsynchronized is True
    assert st.daemon_maintained is False  # maxerror sits at the kernel's 16 s ceiling
    assert st.maxerror_s in (None, 16.0)
    assert st.esterror_s in (None, 16.0)
    assert st.status_flags == ("STA_UNSYNC",)
    assert st.summary() == "kernel says: unsynchronized (STA_UNSYNC, TIME_ERROR); maxerror 16 s"


def test_c8_chrony_without_rtcsync() -> None:
    # STA_UNSYNC kept on purpose, so TIME_ERROR, but maxerror 5 ms maintained by chronyd.
    raw = TimexRaw(status=STA_UNSYNC | STA_PLL | STA_NANO, maxerror=5_000, esterror=120,
                   offset=-2_500, freq=-7 * SCALED_PPM)
    st = parse_timex(raw, return_code=5)
    assert st.unsynchronized is True and st.daemon_maintained is True
    assert st.maxerror_s == 0.005 and st.esterror_s == 0.000120
    assert st.offset_s == -2.5e-6 and st.frequency_ppm == -7.0
    assert st.status_flags == ("STA_PLL", "STA_UNSYNC", "STA_NANO")
    assert "maxerror 5 ms (kept by a daemon" in st.summary()


def test_synchronized_state_fields() -> None:
    raw = TimexRaw(status=STA_PLL | STA_NANO, offset=12_300, freq=int(-12.5 * SCALED_PPM),
                   maxerror=1_500, esterror=3, constant=6, precision=1,
                   tolerance=32_768_000, tick=10_000, tai=37)
    st = parse_timex(raw, return_code=0)
    assert st.state == "TIME_OK" and st.unsynchronized is False
    assert st.status_bits == 0x2001
    assert st.offset_s == pytest.approx(12.3e-6, abs=1e-15)
    assert st.frequency_ppm == -12.5
    assert (st.maxerror_s, st.esterror_s) == (0.0015, 0.000003)
    assert (st.tai_offset_s, st.tick_us, st.constant) == (37, 10_000, 6)
    assert (st.precision_s, st.tolerance_ppm) == (1e-6, 500.0)
    assert st.leap_pending is None
    assert st.summary() == (
        "kernel says: synchronized (TIME_OK, STA_PLL); maxerror 1.5 ms; offset +12.3 µs; "
        "freq -12.500 ppm; esterror 3 µs; TAI-UTC 37 s"
    )


@pytest.mark.parametrize("bad_us", [-1, -16_000_000, 16_000_001, 2**62])
def test_c10_garbage_errors_are_none_never_negative(bad_us: int) -> None:
    st = parse_timex(TimexRaw(status=STA_PLL, maxerror=bad_us, esterror=bad_us), return_code=0)
    assert st.maxerror_s is None and st.esterror_s is None
    assert st.daemon_maintained is False
    assert "maxerror invalid" in st.summary()


def test_c10_zero_and_ceiling_are_kept() -> None:
    assert parse_timex(TimexRaw(maxerror=0, status=0), 0).maxerror_s == 0.0  # C9 timesyncd
    assert parse_timex(TimexRaw(maxerror=16_000_000), 5).maxerror_s == 16.0


@pytest.mark.parametrize(("status", "offset_s"), [(STA_NANO, 5e-6), (0, 5e-3)])
def test_c11_offset_scaling(status: int, offset_s: float) -> None:
    st = parse_timex(TimexRaw(status=status | STA_PLL, offset=5_000, maxerror=100), 0)
    assert st.offset_s == offset_s
    neg = parse_timex(TimexRaw(status=status | STA_PLL, offset=-5_000, maxerror=100), 0)
    assert neg.offset_s == -offset_s


def test_c12_kvm_offset_artefact_parsed_exactly() -> None:
    st = parse_timex(TimexRaw(status=STA_PLL | STA_NANO, offset=4_294_967_296), 0)
    assert st.offset_s == 4.294967296


@pytest.mark.parametrize(
    ("status", "rc", "state", "leap"),
    [
        (STA_PLL | STA_INS, 1, "TIME_INS", "insert"),
        (STA_PLL | STA_DEL, 2, "TIME_DEL", "delete"),
        (STA_PLL | STA_INS, 3, "TIME_OOP", "insert"),
        (STA_PLL, 4, "TIME_WAIT", None),
    ],
)
def test_c14_leap_states(status: int, rc: int, state: str, leap: str | None) -> None:
    st = parse_timex(TimexRaw(status=status, maxerror=1_000), rc)
    assert st.state == state and st.leap_pending == leap
    assert st.unsynchronized is False


def test_bad_return_code_is_an_error() -> None:
    with pytest.raises(CollectorError):
        parse_timex(TimexRaw(), 6)


@pytest.mark.parametrize("err", [errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP])
def test_c13_unavailable_returns_none(err: int) -> None:
    def denied(buf: Timex) -> int:
        raise OSError(err, "denied")

    assert read_kernel_state(denied) is None


def test_c13_negative_return_and_non_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_kernel_state(lambda buf: -1) is None
    monkeypatch.setattr(sys, "platform", "darwin")
    assert read_kernel_state() is None
    with pytest.raises(OSError) as exc_info:
        ax.libc_adjtimex(Timex())
    assert exc_info.value.errno == errno.ENOSYS


def test_unexpected_errno_raises_collector_error() -> None:
    def broken(buf: Timex) -> int:
        raise OSError(errno.EFAULT, "bad address")

    with pytest.raises(CollectorError):
        read_kernel_state(broken)


def test_fake_fills_the_real_struct_read_only() -> None:
    seen_modes: list[int] = []

    def fake(buf: Timex) -> int:
        seen_modes.append(buf.modes)
        buf.status = STA_PLL | STA_NANO
        buf.offset = -750
        buf.freq = 3 * SCALED_PPM
        buf.maxerror = 2_000
        buf.esterror = 50
        buf.tolerance = 32_768_000
        buf.tick = 10_000
        buf.tai = 37
        return 0

    st = read_kernel_state(fake)
    assert seen_modes == [0]  # read-only call
    assert st is not None
    assert (st.state, st.offset_s, st.frequency_ppm) == ("TIME_OK", -7.5e-7, 3.0)
    assert (st.maxerror_s, st.esterror_s, st.tai_offset_s) == (0.002, 0.00005, 37)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux-only")
def test_real_kernel_read() -> None:
    # This container (Linux 6.18 x86_64 VM, no time daemon) reports the C7 state:
    # "kernel says: unsynchronized (STA_UNSYNC, TIME_ERROR); maxerror 16 s",
    # freq 0 ppm, esterror 16 s, tolerance 500 ppm, tick 10 000 µs, TAI offset 0.
    st = read_kernel_state()
    if st is None:  # a sandbox (seccomp, gVisor) may refuse even a read-only adjtimex
        if os.environ.get("CI"):
            pytest.fail("adjtimex refused in CI: the kernel clock state cannot be read")
        pytest.skip("adjtimex is refused on this host: no kernel clock state to read")
    assert -500.0 <= st.frequency_ppm <= 500.0
    assert st.tolerance_ppm == 500.0  # MAXFREQ, a kernel constant
    assert st.maxerror_s is not None and 0.0 <= st.maxerror_s <= 16.0
    assert st.state in ("TIME_OK", "TIME_INS", "TIME_DEL", "TIME_OOP", "TIME_WAIT", "TIME_ERROR")
    assert st.unsynchronized == ("STA_UNSYNC" in st.status_flags or st.state == "TIME_ERROR")
    assert st.summary().startswith("kernel says: ")
