"""The reference lab: real chronyd servers under libfaketime with known offsets and drifts.

Every lab measurement here is checked against ServerTruth with a tiny raw NTP
client written in this file (integer 64-bit fixed point, no ntplib), so the
lab's truth is verified independently of the code under test.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LAB_SLACK_S, require_lab
from timekit.errors import CollectorError
from timekit.lab.chrony import (
    ChronyClient,
    ChronyServer,
    ServerTruth,
    build_shim,
    faketime_spec,
    lab_prerequisites,
)

NS_PER_S = 1_000_000_000
NTP_UNIX_DELTA_S = 2_208_988_800


@pytest.fixture
def needs_lab() -> None:
    """Skipped without chronyd & co. on a bare machine; never in CI, which installs them (fails there)."""
    require_lab(lab_prerequisites())


FAST = (0.250, 100.0)  # +250 ms, +100 ppm
SLOW = (-0.080, -200.0)  # -80 ms, -200 ppm
DRIFT_WINDOW_S = 5.0
OFFSET_TOL_S = 0.002
DRIFT_TOL_PPM = 15.0
CONVERGE_WAIT_S = 60.0


# --------------------------------------------------------------------------- raw NTP client


@dataclass(frozen=True)
class Reply:
    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int
    leap: int
    stratum: int

    @property
    def offset_s(self) -> float:
        # theta = ((T2 - T1) + (T3 - T4)) / 2, summed in integer ns
        return ((self.t2_ns - self.t1_ns) + (self.t3_ns - self.t4_ns)) / 2 / NS_PER_S

    @property
    def delay_s(self) -> float:
        # delta = (T4 - T1) - (T3 - T2)
        return ((self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)) / NS_PER_S

    @property
    def mid_ns(self) -> int:
        return (self.t1_ns + self.t4_ns) // 2


def _to_fixed(unix_ns: int) -> int:
    return ((unix_ns + NTP_UNIX_DELTA_S * NS_PER_S) << 32) // NS_PER_S


def _from_fixed(fixed: int) -> int:
    # era 0 (1900-2036) is enough for a test running now
    return ((fixed * NS_PER_S + (1 << 31)) >> 32) - NTP_UNIX_DELTA_S * NS_PER_S


def ntp_query(port: int, timeout_s: float = 1.0) -> Reply:
    """One 48-byte mode-3 request to 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        t1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        tx = _to_fixed(t1)
        req = bytes([(0 << 6) | (4 << 3) | 3]) + bytes(39) + struct.pack("!Q", tx)
        s.sendto(req, ("127.0.0.1", port))
        data = s.recv(1024)
        t4 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert len(data) >= 48
    assert data[0] & 0x7 == 4, "mode must be 4 (server)"
    origin, rx, txs = struct.unpack("!QQQ", data[24:48])
    assert origin == tx, "origin must echo our transmit timestamp"
    return Reply(t1, _from_fixed(rx), _from_fixed(txs), t4, data[0] >> 6, data[1])


def best_of(port: int, n: int = 5) -> Reply:
    """The lowest-delay reply of a short burst."""
    replies = [ntp_query(port) for _ in range(n)]
    return min(replies, key=lambda r: r.delay_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- fixtures


@dataclass
class ChronyPair:
    fast: ChronyServer
    slow: ChronyServer
    client: ChronyClient
    first: dict[str, Reply]
    t0_mono_ns: int


@pytest.fixture(scope="module")
def chrony_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChronyPair]:
    """Two chronyd servers (fast, slow) under libfaketime and a chronyd client of the fast one."""
    require_lab(lab_prerequisites())
    root = tmp_path_factory.mktemp("lab")
    cache = root / "cache"
    started: list[ChronyServer | ChronyClient] = []
    try:
        fast = ChronyServer.start(free_port(), *FAST, workdir=root / "fast", cache_dir=cache)
        started.append(fast)
        slow = ChronyServer.start(free_port(), *SLOW, workdir=root / "slow", cache_dir=cache)
        started.append(slow)
        client = ChronyClient.start(fast.port, root / "client", poll=-2)
        started.append(client)
        first = {"fast": best_of(fast.port), "slow": best_of(slow.port)}
        yield ChronyPair(fast, slow, client, first, time.monotonic_ns())
    finally:
        for p in reversed(started):
            p.stop()


def _wait_until(t0_mono_ns: int, seconds: float) -> None:
    remaining = seconds - (time.monotonic_ns() - t0_mono_ns) / NS_PER_S
    if remaining > 0:
        time.sleep(remaining)


# --------------------------------------------------------------------------- pure


def test_truth_offset_at_is_the_line() -> None:
    tr = ServerTruth(offset_s=0.25, drift_ppm=100.0, start_ns=1_000 * NS_PER_S)
    assert tr.offset_at(1_000 * NS_PER_S) == 0.25
    # 10 s later at +100 ppm: +1 ms
    assert tr.offset_at(1_010 * NS_PER_S) == pytest.approx(0.251, abs=1e-12)
    # before the anchor the line extends backwards
    assert tr.offset_at(990 * NS_PER_S) == pytest.approx(0.249, abs=1e-12)
    assert ServerTruth.from_dict(tr.to_dict()) == tr


def test_faketime_spec_signs_and_rate() -> None:
    assert faketime_spec(0.25, 100.0) == "+0.250000000 x1.000100000000"
    assert faketime_spec(-0.08, -200.0) == "-0.080000000 x0.999800000000"
    assert faketime_spec(0.0, 0.0) == "+0.000000000 x1.000000000000"


# --------------------------------------------------------------------------- lab


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
@pytest.mark.parametrize("name", ["fast", "slow"])
def test_server_offset_matches_truth(chrony_pair: ChronyPair, name: str) -> None:
    server: ChronyServer = getattr(chrony_pair, name)
    r = chrony_pair.first[name]
    truth_s = server.truth.offset_at(r.mid_ns)
    assert abs(r.offset_s - truth_s) <= r.delay_s / 2 + LAB_SLACK_S, (r.offset_s, truth_s, r.delay_s)
    # the shim works: the server's stamps come from one (faked) clock and lie inside our round trip;
    # without it T2 is the real clock, T3 - T2 is about the offset and the delay about -offset
    assert 0 <= r.t3_ns - r.t2_ns <= r.t4_ns - r.t1_ns + LAB_SLACK_S * NS_PER_S, (r.t2_ns, r.t3_ns)
    assert r.delay_s >= -LAB_SLACK_S, r.delay_s
    assert r.stratum == 1
    assert r.leap != 3


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
def test_server_drift_matches_truth(chrony_pair: ChronyPair) -> None:
    _wait_until(chrony_pair.t0_mono_ns, DRIFT_WINDOW_S)
    for name in ("fast", "slow"):
        server: ChronyServer = getattr(chrony_pair, name)
        a, b = chrony_pair.first[name], best_of(server.port)
        elapsed_s = (b.mid_ns - a.mid_ns) / NS_PER_S
        assert elapsed_s >= DRIFT_WINDOW_S - 0.5
        measured_ppm = (b.offset_s - a.offset_s) / elapsed_s * 1e6
        # each offset is within delay/2 of its truth, so the slope within the sum over the span (a busy
        # machine's late replies can make that wider than the 15 ppm a quiet one always meets)
        bound_ppm = ((a.delay_s + b.delay_s) / 2 + 2 * LAB_SLACK_S) / elapsed_s * 1e6
        assert abs(measured_ppm - server.truth.drift_ppm) < max(DRIFT_TOL_PPM, bound_ppm), name
        assert abs(b.offset_s - server.truth.offset_at(b.mid_ns)) <= b.delay_s / 2 + LAB_SLACK_S


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
def test_chrony_client_agrees_with_truth(chrony_pair: ChronyPair) -> None:
    """chronyd as a client is an independent measurement of the same server."""
    _wait_until(chrony_pair.t0_mono_ns, DRIFT_WINDOW_S + 1.0)
    deadline = time.monotonic() + CONVERGE_WAIT_S
    while True:  # until chronyd has settled on the server: a busy machine takes longer (bounded)
        ss = chrony_pair.client.sourcestats()
        if ss["n_samples"] >= 8 and ss["freq_skew_ppm"] <= DRIFT_TOL_PPM / 3:
            break
        assert time.monotonic() < deadline, f"chronyd did not settle in {CONVERGE_WAIT_S} s more: {ss}"
        time.sleep(0.5)
    tr = chrony_pair.client.tracking()
    t_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert tr["ref_id"] == "7F000001"
    assert tr["stratum"] == 2
    # chrony's system_time_s: positive = local slow of NTP time (server 0.25 s ahead)
    assert abs(tr["system_time_s"] - chrony_pair.fast.truth.offset_at(t_ns)) < OFFSET_TOL_S
    # chrony's frequency: negative = local slow; the server gains 100 ppm
    assert abs(tr["frequency_ppm"] - (-chrony_pair.fast.truth.drift_ppm)) < DRIFT_TOL_PPM
    ss = chrony_pair.client.sourcestats()
    assert ss["name"] == "127.0.0.1"
    assert ss["n_samples"] >= 3
    # synchronised to the source: residual offset and frequency are near zero
    assert abs(ss["offset_s"]) < 0.001
    assert abs(ss["frequency_ppm"]) < DRIFT_TOL_PPM


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
def test_detached_server_reattach_and_stop(tmp_path: Path) -> None:
    srv = ChronyServer.start(free_port(), 0.0, 0.0, tmp_path / "d", detach=True, cache_dir=tmp_path / "cache")
    try:
        assert os.getsid(srv.pid) == srv.pid  # own session: survives the parent
        again = ChronyServer.from_dict(srv.to_dict())
        assert again.alive()
        assert again.truth == srv.truth
        again.stop()
        again.stop()  # idempotent
        assert not again.alive()
        assert not (tmp_path / "d" / "chronyd.pid").exists()
    finally:
        srv.stop()
    assert not srv.alive()


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(CollectorError, match=f"port 127.0.0.1:{port} is already in use"):
            ChronyServer.start(port, 0.1, 0.0, tmp_path / "x", cache_dir=tmp_path / "cache")


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
def test_build_shim_is_cached(tmp_path: Path) -> None:
    so = build_shim(tmp_path)
    mtime = so.stat().st_mtime_ns
    assert build_shim(tmp_path) == so
    assert so.stat().st_mtime_ns == mtime  # not rebuilt


@pytest.mark.lab
@pytest.mark.usefixtures("needs_lab")
def test_truth_check_catches_a_server_off_its_anchored_line(chrony_pair: ChronyPair) -> None:
    """A lab server is checked at start against its own anchored truth (a server off it would be
    judged against a wrong truth by every lab test): the real one passes, the same server with its
    truth moved by 300 µs (an anchor read on another line) is named with the figure."""
    from dataclasses import replace

    from timekit.lab.chrony import _truth_check

    fast = chrony_pair.fast
    assert _truth_check(fast) == ""
    honest = fast.truth
    try:
        fast.truth = replace(honest, offset_s=honest.offset_s + 300e-6)
        msg = _truth_check(fast)
    finally:
        fast.truth = honest
    m = re.search(r"answers ([-+][0-9.]+) µs off its anchored truth", msg)
    assert m is not None, msg
    assert float(m.group(1)) == pytest.approx(-300.0, abs=60.0), msg
