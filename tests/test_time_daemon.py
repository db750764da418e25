"""The host's time daemon as a source and a suspect (issue 13, items 2 and 3).

Real chronyd clients (`ChronyClient`, `-x`: they never touch the host's clock) stand in for the host's
daemon: one follows an honest lab server, one follows the lab's liar (2.5 s off the majority). timekit
reads each through `chronyc -c`, stores the reading, and checks its claims against its own majority
interval at the reading's instant. ntpd/ntpsec and systemd-timesyncd do not run here: their adapters are
checked on the output formats their clients print (ntpq, timedatectl), with every unit and sign.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import record_figure, require_lab, run_cli
from timekit.analysis.time_daemon import DaemonPolicy, gap_s, judge_daemon
from timekit.collectors.time_daemon import parse_chronyc, parse_ntpq, parse_timesyncd, read_daemon
from timekit.daemon_samples import DaemonSample, DaemonSource
from timekit.errors import CollectorError
from timekit.lab.chrony import ChronyClient, ChronyServer, lab_prerequisites
from timekit.lab.manager import MAJORITY_CHRONY, MAJORITY_GOOD_PORTS, Lab, start_lab
from timekit.store.database import Store
from timekit.units import NS_PER_S

# ----------------------------------------------------------------------------- formats
# ntpsec 1.2's `ntpq -n -c rv` and `ntpq -n -c peers` (the layout of its docs; values chosen here)
NTPQ_RV = """associd=0 status=0615 leap_none, sync_ntp, 1 event, clock_sync,
version="ntpd ntpsec-1.2.2 2023-01-17T05:41:38Z", processor="x86_64",
system="Linux/6.1.0-13-amd64", leap=00, stratum=2, precision=-24, rootdelay=1.018,
rootdisp=7.815, refid=192.0.2.7,
reftime=e9c6b0a5.80000000 2024-04-25T10:52:21.500Z,
clock=e9c6b0f1.4e2f1a9b 2024-04-25T10:53:37.305Z, peer=45678, tc=6, mintc=3,
offset=-0.034567, frequency=-12.345, sys_jitter=0.123456, clk_jitter=0.045,
clk_wander=0.002, tai=37, leapsec=201701010000, expire=202406280000
"""
NTPQ_PEERS = """     remote                  refid      st t when poll reach   delay   offset   jitter
=======================================================================================
*192.0.2.7               .GPS.            1 u   33   64  377   0.5120  -0.0340   0.0120
+198.51.100.4            192.0.2.7        2 u   2m   64  377   1.2340   0.4560   0.0780
x203.0.113.9             192.0.2.1        2 u   12   64  377   9.8760 2500.123   0.3000
 2001:db8::123           .INIT.          16 u    -   64    0   0.0000   0.0000   0.0000
"""
# systemd 252's `timedatectl show` and `timedatectl show-timesync --all` (its layout, values chosen here)
TIMEDATECTL_SHOW = "Timezone=Etc/UTC\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=yes\n"
TIMESYNC_SHOW = """LinkNTPServers=
SystemNTPServers=
FallbackNTPServers=0.debian.pool.ntp.org 1.debian.pool.ntp.org
ServerName=0.debian.pool.ntp.org
ServerAddress=192.0.2.44
RootDistanceMaxUSec=5s
PollIntervalMinUSec=32s
PollIntervalMaxUSec=34min 8s
PollIntervalUSec=1min 4s
{message}
Frequency=-1082740
""".format(message="NTPMessage={ " + ", ".join([
    "Leap=0", "Version=4", "Mode=4", "Stratum=2", "Precision=-23", "RootDelay=17.013ms",
    "RootDispersion=504.623us", "Reference=DA498B23", "OriginateTimestamp=Tue 2026-05-12 10:49:04 UTC",
    "ReceiveTimestamp=Tue 2026-05-12 10:49:04 UTC", "TransmitTimestamp=Tue 2026-05-12 10:49:04 UTC",
    "DestinationTimestamp=Tue 2026-05-12 10:49:04 UTC", "Ignored=no", "PacketCount=9",
    "Jitter=11.984ms"]) + " }")


def test_ntpq_system_and_peer_variables_in_timekit_units_and_signs() -> None:  # D7
    f = parse_ntpq(NTPQ_RV, NTPQ_PEERS)
    assert f["daemon"] == "ntpd" and f["synchronized"] and f["leap"] == "normal" and f["stratum"] == 2
    assert f["offset_s"] == pytest.approx(-34.567e-6)  # ms -> s; NTP's sign is timekit's
    assert f["root_delay_s"] == pytest.approx(1.018e-3) and f["root_dispersion_s"] == pytest.approx(7.815e-3)
    assert f["frequency_ppm"] == pytest.approx(12.345)  # ntpd's correction, so the clock runs at minus it
    assert f["jitter_s"] == pytest.approx(123.456e-6) and f["update_interval_s"] == 64.0
    # reftime e9c6b0a5.80000000: NTP era 0 seconds -> Unix, the fraction 0x80000000 = 0.5 s exactly
    assert f["ref_time_ns"] == (0xE9C6B0A5 - 2_208_988_800) * NS_PER_S + NS_PER_S // 2
    by = {s.address: s for s in f["sources"]}
    assert [s.state for s in f["sources"]] == ["selected", "candidate", "falseticker", "rejected"]
    gps = by["192.0.2.7"]
    assert (gps.stratum, gps.poll, gps.reach, gps.last_rx_s) == (1, 6, 255, 33.0)
    assert gps.offset_s == pytest.approx(-34e-6) and gps.delay_s == pytest.approx(0.512e-3)
    assert by["198.51.100.4"].last_rx_s == 120.0  # '2m'
    assert by["203.0.113.9"].offset_s == pytest.approx(2.500123)
    assert by["2001:db8::123"].last_rx_s is None and by["2001:db8::123"].reach == 0
    assert f["ref_name"] == "192.0.2.7"  # the sys.peer


def test_timesyncd_state_in_timekit_units_and_signs() -> None:  # D7
    f = parse_timesyncd(TIMEDATECTL_SHOW, TIMESYNC_SHOW)
    assert f["daemon"] == "timesyncd" and f["synchronized"] and f["leap"] == "normal" and f["stratum"] == 2
    assert "offset_s" not in f  # timesyncd keeps none: its claim is centred on this clock
    assert f["root_delay_s"] == pytest.approx(17.013e-3)
    assert f["root_dispersion_s"] == pytest.approx(504.623e-6)
    assert f["jitter_s"] == pytest.approx(11.984e-3) and f["update_interval_s"] == 64.0
    assert f["frequency_ppm"] == pytest.approx(1082740 / 65536)  # the kernel's correction, negated
    assert f["ref_name"] == "192.0.2.44" and f["ref_id"] == "DA498B23"
    assert [(s.address, s.state) for s in f["sources"]] == [("192.0.2.44", "selected")]
    unsynced = parse_timesyncd(TIMEDATECTL_SHOW.replace("NTPSynchronized=yes", "NTPSynchronized=no"),
                               TIMESYNC_SHOW)
    assert not unsynced["synchronized"]


@pytest.mark.parametrize("kind, text", [
    ("chronyc", "506 Cannot talk to daemon\n"),
    ("chronyc", "7F000001,127.0.0.1,2,1.5,0.25,0,0,-1,0,1,0,0,0.3,Sometimes\n"),  # an unknown leap status
    ("chronyc", "7F000001,127.0.0.1,2,1.5,abc,0,0,-1,0,1,0,0,0.3,Normal\n"),
    ("chronyc", "^,*,127.0.0.1,1,-2,377,0,0.1,0.1,0.1\n"),  # sources without tracking
    ("ntpq", "associd=0 status=c016 leap_alarm\n"),
    ("ntpq", "stratum=2, offset=fast\n"),
    ("timesyncd", "NTPMessage={ Leap=0, Stratum=2, RootDelay=soon }\n"),
])
def test_malformed_daemon_output_is_one_clear_error(kind: str, text: str) -> None:  # D6
    with pytest.raises(CollectorError) as e:
        if kind == "chronyc":
            parse_chronyc(text)
        elif kind == "ntpq":
            parse_ntpq(text, "")
        else:
            parse_timesyncd("NTPSynchronized=yes\n", text)
    assert "\n" not in str(e.value) and "unexpected" in str(e.value)


# ----------------------------------------------------------------------------- the judge (pure)
T0 = 1_800_000_000 * NS_PER_S


def _reading(**kw: object) -> DaemonSample:
    base: dict[str, object] = dict(
        daemon="chronyd", t_local_ns=T0, synchronized=True, leap="normal", stratum=2,
        ref_time_ns=T0 - NS_PER_S, offset_s=0.010, root_delay_s=200e-6, root_dispersion_s=50e-6,
        update_interval_s=16.0,
        sources=(DaemonSource("192.0.2.1", "selected", reach=0o377, offset_s=0.0101, error_s=100e-6),))
    base.update(kw)
    return DaemonSample(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("reading, measured, status", [
    (_reading(), (0.0098, 0.0103), "ok"),  # 10 ms ± 150 µs overlaps
    # its claim ends at 10.15 ms, timekit's interval starts at 10.5 ms; its source's ± reaches it
    (_reading(sources=(DaemonSource("192.0.2.1", "selected", reach=0o377, offset_s=0.0104, error_s=3e-4),)),
     (0.0105, 0.0110), "overconfident"),
    (_reading(sources=(DaemonSource("192.0.2.1", "selected", reach=0o377, offset_s=2.5, error_s=1e-4),)),
     (0.0098, 0.0103), "following_falseticker"),
    (_reading(synchronized=False, leap="unsynchronised"), (0.0098, 0.0103), "unsynchronized"),
    (_reading(synchronized=False, leap="unsynchronised", kernel_unsynchronized=False,
              kernel_maxerror_s=0.001), (0.0098, 0.0103), "false_sync_claim"),
    (_reading(sources=(DaemonSource("192.0.2.1", "unusable", reach=0),)), (0.0098, 0.0103), "holdover"),
    (_reading(ref_time_ns=T0 - 3600 * NS_PER_S, sources=(DaemonSource("192.0.2.1", "unusable", reach=0),)),
     (0.0098, 0.0103), "false_sync_claim"),  # an hour without a source, still 'synchronized'
    (_reading(), None, "cannot_tell"),
    # ntpd's offset is its last update's, being slewed out: true time lies between this clock and it
    (_reading(daemon="ntpd", offset_s=0.005, root_delay_s=0.0, root_dispersion_s=0.001, ref_time_ns=T0,
              sources=(DaemonSource("192.0.2.1", "selected", reach=0o377, offset_s=0.005, error_s=1e-3),)),
     (0.0, 0.0001), "ok"),
    (_reading(offset_s=0.005, root_delay_s=0.0, root_dispersion_s=0.001,  # chrony's is its estimate now
              sources=(DaemonSource("192.0.2.1", "selected", reach=0o377, offset_s=0.0, error_s=1e-3),)),
     (0.0, 0.0001), "overconfident"),
    # timesyncd states no offset, and its root delay and dispersion are its server's: nothing to check
    (_reading(daemon="timesyncd", offset_s=None, root_delay_s=0.0, root_dispersion_s=30e-6, ref_time_ns=None,
              sources=(DaemonSource("192.0.2.1", "selected"),)), (0.5, 0.6), "cannot_tell"),
])
def test_each_claim_is_judged(reading: DaemonSample, measured: tuple[float, float] | None,
                              status: str) -> None:  # D1, D2, D3, D4 (synthetic)
    v = judge_daemon(reading, now_realtime_ns=T0 + NS_PER_S, measured=measured)
    assert v.status == status, v.reason
    assert v.suspect == (status in ("following_falseticker", "overconfident", "false_sync_claim"))
    if status == "overconfident" and reading.offset_s == 0.010:
        assert v.excess_s == pytest.approx(0.0105 - 0.01015)  # timekit from 10.5 ms, the claim to 10.15
    if status == "following_falseticker":
        assert v.selected_excess_s == pytest.approx(2.5 - 1e-4 - 0.0103)
        assert "overconfident" not in v.problems  # its own claim (10 ms ± 150 µs) still overlaps


def test_ntpq_edge_cases_are_read_or_refused_in_one_line() -> None:  # D6, D7
    wrapped = ("     remote           refid      st t when poll reach   delay   offset   jitter\n"
               "==============================================================================\n"
               "*2001:db8:1234:5678:9abc:def0:1234:5678\n"
               "                 .GPS.            1 u   33   64  377   0.5120  -0.0340   0.0120\n")
    f = parse_ntpq(NTPQ_RV, wrapped)  # ntpq -w puts a long address on a line of its own
    assert [(x.address, x.state, x.reach) for x in f["sources"]] == [
        ("2001:db8:1234:5678:9abc:def0:1234:5678", "selected", 255)]
    assert f["sources"][0].error_s == pytest.approx(0.512e-3 / 2 + 0.012e-3)  # delay/2 + jitter
    assert parse_ntpq(NTPQ_RV, "No association ID's returned\n")["sources"] == ()
    assert parse_ntpq(NTPQ_RV.replace("tc=6", "tc=2000"), "")["update_interval_s"] is None  # no overflow
    for bad in ("offset=nan", "offset=inf"):
        with pytest.raises(CollectorError):
            parse_ntpq(NTPQ_RV.replace("offset=-0.034567", bad), "")
    with pytest.raises(CollectorError):
        parse_chronyc("7F000001,127.0.0.1,2,1.5,nan,0,0,-1,0,1,0,0,0.3,Normal\n")


def test_an_old_reading_is_not_judged() -> None:
    v = judge_daemon(_reading(), now_realtime_ns=T0 + 3600 * NS_PER_S, measured=(0.0105, 0.0110))
    assert v.status == "cannot_tell" and "3600 s old" in v.reason


def test_gap_is_positive_only_for_disjoint_intervals() -> None:
    assert gap_s((0.0, 1.0), (2.0, 3.0)) == 1.0 and gap_s((2.0, 3.0), (0.0, 1.0)) == 1.0
    assert gap_s((0.0, 2.0), (1.0, 3.0)) == -1.0


def test_readings_round_trip_through_the_store_and_retention(tmp_path: Path) -> None:
    r = _reading(kernel_unsynchronized=True, kernel_maxerror_s=16.0, sources=(
        DaemonSource("192.0.2.1", "selected", stratum=1, poll=6, reach=255, last_rx_s=3.0, offset_s=0.0101,
                     error_s=1e-4, frequency_ppm=0.1, freq_skew_ppm=0.5, std_dev_s=2e-5, n_samples=8),
        DaemonSource("192.0.2.2", "falseticker", reach=255, offset_s=2.5)))
    with Store.open(tmp_path / "s.db") as store:
        store.add_daemon_sample(replace(r, t_local_ns=T0 - 10 * NS_PER_S))
        store.add_daemon_sample(r)
        assert store.daemon_samples(newest=1) == [r]
        assert len(store.daemon_samples()) == 2
        assert store.delete_older_than(T0 - NS_PER_S) >= 1
        assert store.daemon_samples() == [r]
    with sqlite3.connect(tmp_path / "s.db") as c:
        assert c.execute("SELECT count(*) FROM daemon_sources").fetchone()[0] == 2  # the old one's went too


# ----------------------------------------------------------------------------- the lab
@dataclass
class DaemonLab:
    lab: Lab
    honest: ChronyClient
    liar: ChronyClient
    root: Path

    def truth(self, name: str, t_ns: int) -> float:
        return self.lab.server(name).true_offset_at(t_ns)


def _port(lab: Lab, name: str) -> int:
    return int(lab.server(name).address.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def dlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonLab]:
    """The majority lab (three chronyd and a jittery port at +20 ms / -30 ppm, a liar at +2.5 s) and two
    chronyd clients: one follows honest-a, one the liar."""
    require_lab(lab_prerequisites())
    root = tmp_path_factory.mktemp("daemon")
    lab = start_lab(root / "lab", chrony=MAJORITY_CHRONY, good_ports=MAJORITY_GOOD_PORTS, fault_kinds=(),
                    detach=False)
    started: list[ChronyClient] = []
    try:
        started.append(ChronyClient.start(_port(lab, "honest-a"), root / "honest", poll=-2))
        started.append(ChronyClient.start(_port(lab, "liar"), root / "liar", poll=-2))
        yield DaemonLab(lab, started[0], started[1], root)
    finally:
        for c in started:
            c.stop()
        lab.stop()


def _synced(client: ChronyClient, timeout_s: float = 20.0) -> DaemonSample:
    """The client's reading once it follows its server with a few samples (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    for _ in range(400):
        d = read_daemon("chronyd", chronyc_socket=str(client.sock))
        src = d.selected
        if d.synchronized and src is not None and (src.n_samples or 0) >= 8:
            return d
        assert time.monotonic() < deadline, f"chronyd client not synchronized within {timeout_s} s: {d}"
        time.sleep(0.25)
    raise AssertionError("unreachable")


def test_chronyd_reading_in_timekit_signs_against_the_truth(dlab: DaemonLab) -> None:
    d = _synced(dlab.honest)
    assert d.daemon == "chronyd" and d.leap == "normal" and d.stratum == 2 and d.ref_name == "127.0.0.1"
    truth = dlab.truth("honest-a", d.t_local_ns)  # +20 ms: the server is ahead, this clock behind
    assert d.claimed_bound_s is not None and d.read_span_ns is not None
    # its offset is NTP's sign (reference - local): chrony's own error plus the time its answer took
    slack = d.claimed_bound_s + 0.5e-3 + 100e-6 * d.read_span_ns / NS_PER_S
    assert abs(d.offset_s - truth) <= slack, (d.offset_s, truth)  # type: ignore[operator]
    src = d.selected
    assert src is not None and src.offset_s is not None and src.error_s is not None
    assert abs(src.offset_s - truth) <= src.error_s + slack
    # the server loses 30 ppm, so this clock gains against it: +30 ppm in timekit's sign (chrony: "fast")
    assert d.frequency_ppm is not None and d.skew_ppm is not None
    assert abs(d.frequency_ppm - 30.0) <= 3 * d.skew_ppm + 1.0, (d.frequency_ppm, d.skew_ppm)
    assert d.boot_id and d.monotonic_ns and d.raw_ns and d.boottime_ns


def _sample_refs(dlab: DaemonLab, db: Path) -> None:
    addrs = [s.address for s in dlab.lab.servers]
    r = run_cli("sample", "ntp", *addrs, "--count", "4", "--interval", "0.25", "--json", db=db)
    assert r.returncode == 0, r.stderr


def test_an_honest_daemon_is_ok_and_its_claim_meets_the_truth(dlab: DaemonLab, tmp_path: Path) -> None:
    db = tmp_path / "tk.db"
    _synced(dlab.honest)
    _sample_refs(dlab, db)
    r = run_cli("sample", "daemon", "--daemon", "chronyd", "--chronyc-socket", str(dlab.honest.sock),
                "--json", db=db)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    v, d = doc["verdict"], doc["daemon"]
    assert v["status"] == "ok" and not v["suspect"], v["reason"]
    truth = dlab.truth("honest-a", d["t_local_ns"])
    lo, hi = v["measured"]
    assert lo <= truth <= hi  # timekit's interval at the reading's instant holds the truth
    assert gap_s(tuple(v["claimed"]), (lo, hi)) <= 0  # and the daemon's claim overlaps it
    assert v["selected"] == "127.0.0.1" and d["sources"][0]["state"] == "selected"
    check = run_cli("check", db=db)
    assert "chronyd" not in check.stdout  # nothing to say about an honest daemon


def test_a_daemon_following_the_liar_is_caught_by_check_metrics_and_report(dlab: DaemonLab,
                                                                           tmp_path: Path) -> None:
    """D1, D2: a real chronyd following the lab's liar."""
    db = tmp_path / "tk.db"
    _synced(dlab.liar)
    _sample_refs(dlab, db)
    r = run_cli("sample", "daemon", "--daemon", "chronyd", "--chronyc-socket", str(dlab.liar.sock), "--json",
                db=db)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    v, d = doc["verdict"], doc["daemon"]
    assert v["status"] == "following_falseticker" and v["suspect"], v["reason"]
    assert "overconfident" in v["problems"]  # its ± 0.3 ms around +2.5 s excludes the majority's +20 ms
    lo, hi = v["measured"]
    truth = dlab.truth("honest-a", d["t_local_ns"])
    assert lo <= truth <= hi
    liar = dlab.truth("liar", d["t_local_ns"])
    # how far the claim misses: the liar's lie, less both intervals' half-widths
    assert abs(v["excess_s"] - (liar - truth)) <= d["claimed_bound_s"] + (hi - lo) + 1e-3
    check = run_cli("check", db=db)
    assert check.returncode == 2 and "chronyd follows 127.0.0.1" in check.stdout, check.stdout
    prom = tmp_path / "m.prom"
    assert run_cli("export", "prometheus", "--out", str(prom), db=db).returncode == 0
    text = prom.read_text()
    assert 'timekit_daemon_status{daemon="chronyd",status="following_falseticker"} 1.0' in text
    assert 'timekit_daemon_suspect{daemon="chronyd"} 1.0' in text
    excess = next(float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("timekit_daemon_bound_excess_seconds{"))
    assert excess == pytest.approx(v["excess_s"], abs=1e-3)  # the same judgement, a moment later
    out = tmp_path / "report"
    assert run_cli("report", "--out", str(out), db=db).returncode == 0
    md = (out / "summary.md").read_text()
    assert "## The host's time daemon" in md and "**following falseticker**" in md


def test_a_daemon_whose_source_died_holds_over_then_its_sync_claim_is_false(tmp_path: Path) -> None:  # D3
    require_lab(lab_prerequisites())
    from timekit.lab.chrony import _port_free

    port = next(p for p in range(18200, 18300) if _port_free(p))
    srv = ChronyServer.start(port, 0.020, -30.0, tmp_path / "srv")
    cli = None
    try:
        cli = ChronyClient.start(port, tmp_path / "cli", poll=-2)
        before = _synced(cli)
        srv.stop()
        deadline = time.monotonic() + 15.0
        for _ in range(100):  # chronyd marks the source unreachable after 8 missed polls (2 s at poll -2)
            d = read_daemon("chronyd", chronyc_socket=str(cli.sock))
            if all(s.reach == 0 for s in d.sources):
                break
            assert time.monotonic() < deadline, d
            time.sleep(0.25)
        assert d.synchronized and d.leap == "normal"  # chronyd keeps claiming: that is its holdover
        assert d.root_dispersion_s > before.root_dispersion_s  # type: ignore[operator]  # and its bound grows
        v = judge_daemon(d, now_realtime_ns=d.t_local_ns, measured=None)
        assert v.status == "holdover" and "none of its 1 source(s) answers" in v.reason
        # the same real reading, judged as if its last update were long ago: a false claim
        strict = DaemonPolicy(stale_updates=1.0, stale_min_s=0.5)
        assert (d.t_local_ns - d.ref_time_ns) / NS_PER_S > 0.5  # type: ignore[operator]
        v = judge_daemon(d, now_realtime_ns=d.t_local_ns, measured=None, policy=strict)
        assert v.status == "false_sync_claim" and v.suspect
    finally:
        if cli is not None:
            cli.stop()
        srv.stop()


def test_collect_reads_the_daemon_named_in_the_config(dlab: DaemonLab, tmp_path: Path) -> None:  # D5
    db = tmp_path / "tk.db"
    addrs = [s.address for s in dlab.lab.servers]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[ntp]\nservers = {json.dumps(addrs)}\ncount = 2\ninterval_s = 0.2\nmin_poll_s = 15\n"
                   "[clocks]\nenabled = false\n[pauses]\nenabled = false\n"
                   f'[daemon]\nkind = "chronyd"\nchronyc_socket = "{dlab.honest.sock}"\n')
    r = run_cli("collect", "--config", str(cfg), "--json", db=db)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["daemon"]["daemon"] == "chronyd" and doc["daemon_error"] is None
    with Store.open(db) as store:
        stored = store.daemon_samples()
    assert [s.t_local_ns for s in stored] == [doc["daemon"]["t_local_ns"]]
    # a daemon the config names but that cannot be asked: one warning line, the NTP samples kept
    cfg.write_text(cfg.read_text().replace(str(dlab.honest.sock), str(tmp_path / "no.sock")))
    other = tmp_path / "other.db"
    r = run_cli("collect", "--config", str(cfg), "--json", db=other)
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "time daemon not read" in r.stderr, r.stderr
    assert json.loads(r.stdout)["daemon"] is None
    with Store.open(other) as store:
        assert store.daemon_samples() == [] and store.count_ntp_samples() == 2 * len(addrs)


def test_sample_daemon_without_a_daemon_is_one_line_and_stores_nothing(tmp_path: Path) -> None:  # D5
    db = tmp_path / "tk.db"
    r = run_cli("sample", "daemon", "--daemon", "chronyd", "--chronyc-socket", str(tmp_path / "none.sock"),
                db=db)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "chronyd does not answer chronyc" in r.stderr
    r = run_cli("sample", "daemon", "--daemon", "openntpd", db=db)
    assert r.returncode == 2 and "choose chronyd, ntpd or timesyncd" in r.stderr
    with Store.open(db) as store:
        assert store.daemon_samples() == []


def test_the_interval_leans_on_an_ok_daemon_only_and_never_widens(dlab: DaemonLab, tmp_path: Path) -> None:
    """`now --with-daemon` (IntervalPolicy.use_daemon): timekit's interval intersected with the daemon's
    claim now, ClockBound's way (between this clock and its offset, ± its bound, grown at 15 ppm + its
    skew); only while timekit's check of the daemon finds it ok. Judged in-process at one instant."""
    from timekit.analysis.assessment import Policy, assess
    from timekit.analysis.interval import IntervalPolicy
    from timekit.store.evidence import read_evidence, read_now_with_kernel

    db = tmp_path / "tk.db"
    _sample_refs(dlab, db)
    for client, narrows in ((dlab.honest, True), (dlab.liar, False)):
        _synced(client)
        with Store.open(db) as store:
            store.add_daemon_sample(read_daemon("chronyd", chronyc_socket=str(client.sock)))
            ev = read_evidence(store, now=read_now_with_kernel())
        judged = assess(ev, Policy())
        plain = judged.interval
        leaning = assess(ev, Policy(interval=IntervalPolicy(use_daemon=True))).interval
        d = ev.daemon
        assert judged.daemon is not None
        assert judged.daemon.status == ("ok" if narrows else "following_falseticker"), judged.daemon.reason
        assert plain is not None and leaning is not None and d is not None
        assert plain.earliest_ns is not None and plain.latest_ns is not None
        assert leaning.earliest_ns is not None and leaning.latest_ns is not None
        if not narrows:  # a daemon following the liar is never leaned on
            assert (leaning.earliest_ns, leaning.latest_ns) == (plain.earliest_ns, plain.latest_ns)
            assert "narrowed" not in leaning.reason
            continue
        # the claim, written out: [min(0, offset), max(0, offset)] ± (bound + (15 + skew) ppm × age),
        # less any wall-clock step since the reading (here: the pairing of the clock reads, ~1 µs)
        assert d.boottime_ns is not None and d.offset_s is not None and d.claimed_bound_s is not None
        age_s = (ev.boottime_ns - d.boottime_ns) / NS_PER_S
        step_s = ((ev.realtime_ns - ev.boottime_ns) - (d.t_local_ns - d.boottime_ns)) / NS_PER_S
        grow = d.claimed_bound_s + (15.0 + abs(d.skew_ppm or 0.0)) * 1e-6 * age_s
        lo = plain.as_of_ns + round((min(0.0, d.offset_s) - step_s - grow) * NS_PER_S)
        hi = plain.as_of_ns + round((max(0.0, d.offset_s) - step_s + grow) * NS_PER_S)
        assert leaning.earliest_ns >= plain.earliest_ns and leaning.latest_ns <= plain.latest_ns  # not wider
        assert abs(leaning.earliest_ns - max(plain.earliest_ns, lo)) <= 1
        assert abs(leaning.latest_ns - min(plain.latest_ns, hi)) <= 1
        assert ("narrowed by chronyd" in leaning.reason) == (
            (leaning.earliest_ns, leaning.latest_ns) != (plain.earliest_ns, plain.latest_ns))


def test_now_with_daemon_reads_it_fresh_or_says_why_not(dlab: DaemonLab, tmp_path: Path) -> None:
    db = tmp_path / "tk.db"
    _synced(dlab.honest)
    _sample_refs(dlab, db)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[daemon]\nkind = "chronyd"\nchronyc_socket = "{dlab.honest.sock}"\n')
    r = run_cli("now", "--with-daemon", "--config", str(cfg), "--json", db=db)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    record_figure("daemon", f"now --with-daemon: ±{doc['uncertainty_s'] * 1e6:.1f} µs; {doc['reason'][-90:]}")
    truth = dlab.truth("honest-a", doc["as_of_ns"])  # an honest daemon and an honest majority
    assert doc["earliest_ns"] - doc["as_of_ns"] <= truth * NS_PER_S <= doc["latest_ns"] - doc["as_of_ns"]
    with Store.open(db) as store:
        assert len(store.daemon_samples()) == 1  # read at that moment, and kept
    cfg.write_text(f'[daemon]\nkind = "chronyd"\nchronyc_socket = "{tmp_path / "none.sock"}"\n')
    r = run_cli("now", "--with-daemon", "--config", str(cfg), "--json", db=db)
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "time daemon not read now" in r.stderr
    assert json.loads(r.stdout)["earliest_ns"] is not None
