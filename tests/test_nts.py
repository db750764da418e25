"""NTS (RFC 8915) against real chronyd serving NTS-KE with a certificate from a CA the lab makes, and
against fault servers: authenticated offsets as true as plain NTP from the same server; every NTS
failure caught with its own code and never used; an on-path rewrite measured as a false offset over
plain NTP and rejected over NTS, side by side; cookies never sent twice; sessions kept in the store."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import record_figure, require_lab, run_cli
from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.server_policy import ServerState
from timekit.errors import UsageError
from timekit.lab.chrony import ChronyServer, lab_prerequisites
from timekit.lab.manager import free_port
from timekit.lab.nts_lab import (
    FaultKeServer,
    LabCa,
    OnPathProxy,
    issue,
    make_ca,
    nts_conf,
    nts_path_conf,
    start_nts_chronyd,
)
from timekit.samples import NtpSample

SLACK_S = 50e-6  # the lab's truth check: an answer within delay/2 + this of its anchored line
SHIFT_S = 0.5  # what the on-path attacker adds to the server's timestamps


@dataclass
class NtsLab:
    ca: LabCa
    good: ChronyServer  # NTS chronyd, NTP straight to it
    good_ke: int
    path: ChronyServer  # NTS chronyd whose KE answers send NTP to 127.0.0.2: the proxy
    path_ke: int
    proxy: OnPathProxy
    cert: Path
    key: Path
    tmp: Path


@pytest.fixture(scope="module")
def nts_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NtsLab]:
    require_lab(lab_prerequisites())
    tmp = tmp_path_factory.mktemp("nts")
    ca = make_ca(tmp / "ca")
    cert, key = issue(ca, tmp / "srv", ("localhost", "127.0.0.1"))
    good_ke, path_ke = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    good = start_nts_chronyd(free_port(socket.SOCK_DGRAM), 0.050, 0.0, tmp / "good", cert, key, good_ke)
    path = None
    try:
        path_port = free_port(socket.SOCK_DGRAM)
        path = ChronyServer.start(path_port, -0.030, 0.0, tmp / "path",
                                  extra_conf=nts_conf(cert, key, path_ke, tmp / "path" / "ntsdump")
                                  + nts_path_conf("127.0.0.2"))
        proxy = OnPathProxy(("127.0.0.2", path_port), ("127.0.0.1", path_port))
        yield NtsLab(ca, good, good_ke, path, path_ke, proxy, cert, key, tmp)
        proxy.stop()
    finally:
        good.stop()
        if path is not None:
            path.stop()


def run(addresses: list[str], ca: Path, *, count: int = 6, states: dict[str, ServerState] | None = None,
        timeout_s: float = 1.0) -> list[NtpSample]:
    out: list[NtpSample] = []
    plan = QueryPlan(count=count, interval_s=0.05, timeout_s=timeout_s, nts_ca=str(ca))
    asyncio.run(sample_servers([parse_server(a) for a in addresses], plan, {} if states is None else states,
                               lambda s, _st: out.append(s)))
    return out


def _never_used(samples: list[NtpSample], code: str) -> None:
    """Every attempt rejected, none with an offset or said to be authenticated: `code`, or a timeout where a
    busy machine kept the proxy from answering in time (at least one `code`, so the check is not vacuous)."""
    assert samples and all(not s.ok and s.offset_s is None and not s.authenticated for s in samples)
    errors = [s.error for s in samples]
    assert set(errors) <= {code, "timeout"} and code in errors, [(s.error, s.detail) for s in samples]


def _best(samples: list[NtpSample], server: str) -> NtpSample:
    return min((s for s in samples if s.server == server and s.ok), key=lambda s: s.delay_s or 0.0)


def test_nts_offsets_are_authenticated_and_as_true_as_plain_ntp(nts_lab: NtsLab) -> None:
    g = nts_lab.good
    plain, by_name, by_ip = g.address, f"nts://localhost:{nts_lab.good_ke}", f"nts://127.0.0.1:{nts_lab.good_ke}"
    samples = run([plain, by_name, by_ip], nts_lab.ca.cert_path, count=8)
    figures = []
    for server in (plain, by_name, by_ip):
        mine = [s for s in samples if s.server == server]
        assert len(mine) == 8 and all(s.ok for s in mine), [(s.error, s.detail) for s in mine]
        assert all(s.authenticated == server.startswith("nts://") for s in mine)
        best = _best(samples, server)
        assert best.delay_s is not None and best.offset_s is not None
        error = best.offset_s - g.truth.offset_at(best.t_local_ns)
        assert abs(error) <= best.delay_s / 2 + SLACK_S, (server, error, best.delay_s)
        figures.append(f"{server} {error * 1e6:+.1f} µs (delay {best.delay_s * 1e6:.0f} µs)")
    record_figure("nts", "offset minus truth, same chronyd: " + "; ".join(figures))


def test_cookies_are_sent_once_each_and_replenished(nts_lab: NtsLab) -> None:  # A8
    nts_lab.proxy.mode = "pass"
    nts_lab.proxy.cookies_seen.clear()
    states: dict[str, ServerState] = {}
    server = f"nts://127.0.0.1:{nts_lab.path_ke}"
    first = run([server], nts_lab.ca.cert_path, count=10, states=states)
    session = states[server].nts
    assert session is not None
    ke_ns = session.ke_ns
    second = run([server], nts_lab.ca.cert_path, count=10, states=states)  # the same session: no new KE
    both = first + second
    ok = [s for s in both if s.ok]
    # a reply the (Python) proxy was too busy to pass on in time is a timeout, never a forgery
    assert ok and all(s.authenticated for s in ok) and all(s.error == "timeout" for s in both if not s.ok)
    assert states[server].nts is session and session.ke_ns == ke_ns
    seen = nts_lab.proxy.cookies_seen
    assert len(seen) >= len(ok) and len(set(seen)) == len(seen)  # one cookie a request, none twice
    assert not set(session.cookies) & set(seen)
    if both[-1].ok:  # the last reply's cookies refilled the jar
        assert len(session.cookies) == 8


def test_an_on_path_rewrite_moves_plain_ntp_and_is_rejected_over_nts(nts_lab: NtsLab) -> None:  # A1
    p = nts_lab.path
    plain_via_path = f"127.0.0.2:{p.port}"
    nts_server = f"nts://127.0.0.1:{nts_lab.path_ke}"  # its KE sends NTP to 127.0.0.2: the proxy
    nts_lab.proxy.mode = "rewrite"
    try:
        samples = run([plain_via_path, nts_server], nts_lab.ca.cert_path, count=6)
    finally:
        nts_lab.proxy.mode = "pass"
    best = _best(samples, plain_via_path)
    assert best.offset_s is not None and best.delay_s is not None
    truth = p.truth.offset_at(best.t_local_ns)
    # plain NTP believes the attacker: the offset moved by the shift, within NTP's own bound
    assert abs(best.offset_s - (truth + SHIFT_S)) <= best.delay_s / 2 + SLACK_S + 1e-3, (best.offset_s, truth)
    nts_samples = [s for s in samples if s.server == nts_server]
    assert len(nts_samples) == 6
    _never_used(nts_samples, "nts_bad_auth")
    record_figure("nts", f"on-path +{SHIFT_S} s rewrite: plain NTP measured {best.offset_s:+.6f} s (truth "
                  f"{truth:+.6f} s); NTS: {len(nts_samples)} attempts, "
                  f"{sum(s.error == 'nts_bad_auth' for s in nts_samples)} rejected as nts_bad_auth, "
                  "none used")


@pytest.mark.parametrize(("mode", "plain_code"), [("forge", None), ("replay", "bogus_origin")])
def test_forged_or_replayed_replies_are_never_used(nts_lab: NtsLab, mode: str,
                                                   plain_code: str | None) -> None:  # A2, A3
    p = nts_lab.path
    nts_server = f"nts://127.0.0.1:{nts_lab.path_ke}"
    nts_lab.proxy.mode = mode
    try:
        samples = run([nts_server, f"127.0.0.2:{p.port}"], nts_lab.ca.cert_path, count=4)
    finally:
        nts_lab.proxy.mode = "pass"
    nts_samples = [s for s in samples if s.server == nts_server]
    assert len(nts_samples) == 4, [(s.error, s.detail) for s in nts_samples]
    if mode == "replay":  # the first request has nothing to replay yet; every later one is rejected
        _never_used(nts_samples[1:], "nts_bad_auth")
        plain = [s for s in samples if s.server != nts_server][1:]
        assert plain and not any(s.ok for s in plain)
        assert {s.error for s in plain} <= {plain_code, "timeout"}
    else:
        _never_used(nts_samples, "nts_bad_auth")


@pytest.mark.parametrize(("mode", "code"), [
    ("error", "nts_ke_error"), ("warning", "nts_ke_warning"), ("critical", "nts_unknown_critical"),
    ("no_cookies", "nts_no_cookies"), ("nak", "nts_nak")])
def test_every_ke_fault_has_its_code_and_is_never_used(nts_lab: NtsLab, mode: str,
                                                       code: str) -> None:  # A5, A6, A7
    fault = FaultKeServer(mode, nts_lab.cert, nts_lab.key)
    try:
        states: dict[str, ServerState] = {}
        server = f"nts://127.0.0.1:{fault.port}"
        samples = run([server], nts_lab.ca.cert_path, count=3, states=states)
    finally:
        fault.stop()
    assert samples and all(s.error == code and not s.ok and s.offset_s is None and not s.authenticated
                           for s in samples), [(s.error, s.detail) for s in samples]
    if mode == "nak":  # a NAK drops the keys: every later attempt keys again
        assert len(samples) == 3 and fault.ke_count == 3 and states[server].nts is None
    else:  # a failed key exchange ends the server's run: no NTP packet, no retry storm
        assert len(samples) == 1 and fault.ke_count == 1


def test_a_certificate_for_another_name_or_from_another_ca_is_refused(nts_lab: NtsLab) -> None:  # A4
    wrong_cert, wrong_key = issue(nts_lab.ca, nts_lab.tmp / "wrong", ("wrong.example",))
    other_ca = make_ca(nts_lab.tmp / "other-ca")
    stranger_cert, stranger_key = issue(other_ca, nts_lab.tmp / "stranger", ("localhost", "127.0.0.1"))
    cases = ((wrong_cert, wrong_key, "does not name"), (stranger_cert, stranger_key, "verify"))
    for cert, key, words in cases:
        fault = FaultKeServer("ok", cert, key)
        try:
            samples = run([f"nts://localhost:{fault.port}", f"nts://127.0.0.1:{fault.port}"],
                          nts_lab.ca.cert_path, count=2)
        finally:
            fault.stop()
        refused = all(s.error == "nts_tls" and words in (s.detail or "") for s in samples)
        assert len(samples) == 2 and refused, [(s.error, s.detail) for s in samples]


def test_sample_ntp_cli_stores_authenticated_samples_and_reuses_the_session(nts_lab: NtsLab,
                                                                             tmp_path: Path) -> None:  # A8
    db = tmp_path / "db"
    server = f"nts://localhost:{nts_lab.good_ke}"
    args = ("sample", "ntp", "--count", "3", "--interval", "0.05", "--nts-ca", str(nts_lab.ca.cert_path),
            "--json", server)
    first = run_cli(*args, db=db)
    assert first.returncode == 0, first.stderr
    assert all(s["authenticated"] and s["ok"] for s in json.loads(first.stdout)["samples"])
    kept = Path(f"{db}.nts")  # the keys live apart from the store, readable by its owner only
    assert kept.stat().st_mode & 0o777 == 0o600
    session = json.loads(kept.read_text())[server]
    ke_ns = session["ke_ns"]
    assert len(session["cookies"]) == 8
    with closing(sqlite3.connect(db)) as c:
        assert not c.execute("SELECT count(*) FROM sqlite_master WHERE sql LIKE '%c2s%'").fetchone()[0]
    second = run_cli(*args, db=db)
    assert second.returncode == 0, second.stderr
    ke_again = json.loads(kept.read_text())[server]["ke_ns"]
    with closing(sqlite3.connect(db)) as c:
        rows = c.execute("SELECT authenticated FROM ntp_samples WHERE server = ?", (server,)).fetchall()
    assert ke_again == ke_ns  # the stored keys and cookies carried over: no second key exchange
    assert rows == [(1,)] * 6
    export = run_cli("export", "csv", "--out", str(tmp_path / "s.csv"), db=db)
    assert export.returncode == 0, export.stderr
    head, *lines = (tmp_path / "s.csv").read_text().splitlines()
    col = head.split(",").index("authenticated")
    assert [ln.split(",")[col] for ln in lines] == ["true"] * 6
    forget = run_cli("servers", "forget", "--json", server, db=db)  # its keys and cookies go with it
    assert forget.returncode == 0, forget.stderr
    assert json.loads(forget.stdout)["forgotten"][server]["nts_session"] == 1
    assert server not in json.loads(kept.read_text())


@pytest.mark.parametrize(("text", "name"), [
    ("nts://time.example.org", "nts://time.example.org:4460"), ("nts://127.0.0.1:24460", "nts://127.0.0.1:24460"),
    ("NTS://[::1]", "nts://[::1]:4460")])
def test_nts_server_names(text: str, name: str) -> None:
    a = parse_server(text)
    assert a.nts and a.name == name


@pytest.mark.parametrize("text", ["nts://", "nts://lab:chrony-near", "nts://a/b", "nts://host:0"])
def test_bad_nts_server_names_are_one_line(text: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_server(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("text", "words"), [
    ("not a certificate\n", "no PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse")])
def test_a_bad_nts_ca_file_is_one_line_and_nothing_is_stored(tmp_path: Path, text: str,
                                                              words: str) -> None:  # A10
    bad = tmp_path / "ca.pem"
    bad.write_text(text)
    r = run_cli("sample", "ntp", "--nts-ca", str(bad), "nts://127.0.0.1:1", db=tmp_path / "db")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    assert not (tmp_path / "db").exists()


def test_a_ke_failure_of_any_kind_is_that_servers_code_never_the_runs_crash(nts_lab: NtsLab,
                                                                             tmp_path: Path) -> None:  # A4
    """A CA file that cannot be loaded when the key exchange runs (deleted, or garbled after the check):
    that server's attempt is `nts_tls`; the plain server beside it is measured as usual."""
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    plain, server = nts_lab.good.address, f"nts://127.0.0.1:{nts_lab.good_ke}"
    samples = run([plain, server], bad, count=2)
    assert [s.error for s in samples if s.server == server] == ["nts_tls"]
    assert any(s.ok for s in samples if s.server == plain)


def _check(db: Path, *args: str) -> tuple[int, dict]:
    r = run_cli("check", "--json", *args, db=db)
    return r.returncode, json.loads(r.stdout)


def test_require_nts_judges_only_authenticated_sources(nts_lab: NtsLab, tmp_path: Path) -> None:  # A9
    """A store holding a plain server moved 0.5 s by an on-path attacker and an NTS server: by default
    the check sees two references that disagree; with --require-nts (or [interval] authenticated_only)
    only the NTS server is judged, and its offset is the truth's; without any NTS source it is CRITICAL."""
    p = nts_lab.path
    ca = str(nts_lab.ca.cert_path)
    nts_server = f"nts://127.0.0.1:{nts_lab.path_ke}"
    db = tmp_path / "db"
    nts_lab.proxy.mode = "rewrite"
    try:
        r = run_cli("sample", "ntp", "--count", "4", "--interval", "0.05", "--nts-ca", ca,
                    f"127.0.0.2:{p.port}", db=db)  # the attacker's plain answers
    finally:
        nts_lab.proxy.mode = "pass"
    assert r.returncode == 0, r.stderr
    code, doc = _check(db, "--require-nts")
    assert code == 2 and "no NTS server" in doc["summary"], doc  # only plain samples so far
    r = run_cli("sample", "ntp", "--count", "4", "--interval", "0.05", "--nts-ca", ca, nts_server, db=db)
    assert r.returncode == 0, r.stderr
    _, both = _check(db, "--warn-offset", "1", "--crit-offset", "2")
    assert both["status"] != "ok" and "majority" in both["summary"], both  # two references 0.5 s apart
    code, doc = _check(db, "--require-nts", "--warn-offset", "1", "--crit-offset", "2")
    assert code == 0, doc
    offset = doc["metrics"]["offset_s"]
    from timekit.collectors.clocks import realtime_ns

    assert abs(offset - p.truth.offset_at(realtime_ns())) < 0.001, (offset, p.truth)  # not the +0.47 s
    cfg = tmp_path / "t.toml"
    cfg.write_text("[interval]\nauthenticated_only = true\n")
    now = run_cli("now", "--json", "--config", str(cfg), db=db)
    assert now.returncode == 0, now.stderr
    used = json.loads(now.stdout)
    text = json.dumps(used)
    assert nts_server in text and f"127.0.0.2:{p.port}" not in text
    prom = tmp_path / "m.prom"
    assert run_cli("export", "prometheus", "--out", str(prom), db=db).returncode == 0
    lines = [ln for ln in prom.read_text().splitlines() if ln.startswith("timekit_server_authenticated{")]
    assert sorted(lines) == sorted([f'timekit_server_authenticated{{server="{nts_server}"}} 1.0',
                                    f'timekit_server_authenticated{{server="127.0.0.2:{p.port}"}} 0.0'])


def test_require_nts_with_a_plain_server_named_is_critical_without_measuring(tmp_path: Path) -> None:  # A9
    code, doc = _check(tmp_path / "db", "--require-nts", "127.0.0.1:9")
    assert code == 2 and "127.0.0.1:9 not NTS" in doc["summary"], doc


def test_lab_start_nts_serves_authenticated_time_on_its_truth(tmp_path: Path) -> None:
    """`timekit lab start --nts`: a chronyd serving NTS with a certificate from the lab's own CA, named
    in the lab (`lab:chrony-nts`), whose authenticated samples `lab compare` finds on its truth."""
    import os

    require_lab(lab_prerequisites())
    env = {**os.environ, "TIMEKIT_LAB_DIR": str(tmp_path / "lab")}
    r = run_cli("lab", "start", "--nts", "--no-chrony", "--json", env=env)
    assert r.returncode == 0, r.stderr
    try:
        nts = next(s for s in json.loads(r.stdout)["servers"] if s["name"] == "chrony-nts")
        assert nts["address"].startswith("nts://127.0.0.1:")
        ca = tmp_path / "lab" / "nts-ca" / "ca.pem"
        s = run_cli("sample", "ntp", "--count", "4", "--interval", "0.05", "--nts-ca", str(ca), "--json",
                    "lab:chrony-nts", db=tmp_path / "db", env=env)
        assert s.returncode == 0, s.stderr
        samples = json.loads(s.stdout)["samples"]
        assert len(samples) == 4 and all(x["ok"] and x["authenticated"] for x in samples)
        c = run_cli("lab", "compare", "--json", db=tmp_path / "db", env=env)
        assert c.returncode == 0, c.stderr
        row = next(x for x in json.loads(c.stdout)["servers"] if x["name"] == "chrony-nts")
        # every sample on the truth line within NTP's bound (plus the lab's slack)
        bound = max(x["delay_s"] for x in samples) / 2 + SLACK_S
        assert row["n_ok"] == 4 and row["error_max_abs_s"] <= bound, row
    finally:
        run_cli("lab", "stop", env=env)


def _server_reply(session_key: bytes, uid: bytes, cookies: list[bytes], header: bytes = bytes(48)) -> bytes:
    """An NTS reply as a server builds it: header, the client's identifier, then the authenticator over
    both with the new cookies encrypted inside."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    from timekit.collectors import nts

    ad = header + nts.extension_field(nts.EF_UNIQUE_ID, uid)
    nonce = os.urandom(16)
    sealed = AESSIV(session_key).encrypt(b"".join(nts.extension_field(nts.EF_COOKIE, c) for c in cookies),
                                         [ad, nonce])
    import struct

    body = struct.pack(">HH", 16, len(sealed)) + nonce + sealed
    return ad + nts.extension_field(nts.EF_AUTHENTICATOR, body)


def test_reply_verification_rules() -> None:
    """Pure: an authentic reply gives its cookies; a wrong key, a flipped bit, an identifier outside the
    authenticated part, a missing authenticator are each `nts_bad_auth`; a NAK echoing our id is `nts_nak`."""
    import os

    from timekit.collectors import nts

    s2c = os.urandom(32)
    session = nts.NtsSession(os.urandom(32), s2c, "127.0.0.1", 123)
    uid, other = os.urandom(32), os.urandom(32)
    good = _server_reply(s2c, uid, [b"c" * 100, b"d" * 100])
    assert nts.verify_nts_reply(good, session, uid) == [b"c" * 100, b"d" * 100]
    cases = {
        "wrong key": _server_reply(os.urandom(32), uid, [b"c" * 100]),
        "flipped bit": bytes([good[0], good[1] ^ 1]) + good[2:],
        "identifier outside": (_server_reply(s2c, other, [b"c" * 100])
                               + nts.extension_field(nts.EF_UNIQUE_ID, uid)),
        "no authenticator": bytes(48) + nts.extension_field(nts.EF_UNIQUE_ID, uid),
        "not ours": _server_reply(s2c, other, [b"c" * 100]),
    }
    for what, data in cases.items():
        with pytest.raises(nts.NtsError) as e:
            nts.verify_nts_reply(data, session, uid)
        assert e.value.code == "nts_bad_auth", what
    nak = bytearray(48)
    nak[12:16] = b"NTSN"
    with pytest.raises(nts.NtsError) as e:
        nts.verify_nts_reply(bytes(nak) + nts.extension_field(nts.EF_UNIQUE_ID, uid), session, uid)
    assert e.value.code == "nts_nak"


def test_ke_records_are_judged() -> None:
    """Pure: the KE answer's rules, one code each; cookies and the negotiated server and port kept."""
    import struct

    from timekit.collectors import nts

    rec = nts.encode_record
    proto, aead = rec(1, struct.pack(">H", 0)), rec(4, struct.pack(">H", 15))
    cookie = rec(5, b"k" * 64, critical=False)
    ok, done = nts.split_records(proto + aead + cookie + rec(6, b"ntp.example", critical=True)
                                 + rec(7, struct.pack(">H", 1234)) + rec(0))
    assert done
    answer = nts.interpret_ke_answer(ok)
    assert answer.cookies == (b"k" * 64,) and answer.server == "ntp.example" and answer.port == 1234
    faults = ((rec(2, struct.pack(">H", 1)), "nts_ke_error"),
              (proto + aead + rec(3, b"\0\1") + cookie, "nts_ke_warning"),
              (proto + aead + rec(99, b"") + cookie, "nts_unknown_critical"),
              (proto + aead, "nts_no_cookies"),
              (rec(1, struct.pack(">H", 1)) + aead + cookie, "nts_ke_error"),  # not NTPv4
              (proto + rec(4, struct.pack(">H", 30)) + cookie, "nts_ke_error"))  # not AES-SIV
    for body, code in faults:
        with pytest.raises(nts.NtsError) as e:
            nts.interpret_ke_answer(nts.split_records(body + rec(0))[0])
        assert e.value.code == code
    # an unknown record that is not critical is ignored (RFC 8915 §4)
    assert nts.interpret_ke_answer(nts.split_records(proto + aead + rec(99, b"", critical=False) + cookie)[0])


def test_a_session_older_than_a_day_is_keyed_again(nts_lab: NtsLab) -> None:  # A8
    """Kept keys are not trusted for ever: a session made more than a day ago is replaced by a new key
    exchange (the certificate checked again) before the next query."""
    from dataclasses import replace

    from timekit.collectors.ntp_client import NTS_SESSION_MAX_AGE_S
    from timekit.units import NS_PER_S

    server = f"nts://localhost:{nts_lab.good_ke}"
    states: dict[str, ServerState] = {}
    assert all(s.ok for s in run([server], nts_lab.ca.cert_path, count=1, states=states))
    old = states[server].nts
    assert old is not None
    # a day old, and from the future (this clock stepped back since)
    for shift_s in (-(NTS_SESSION_MAX_AGE_S + 60), 3600.0):
        states[server].nts = replace(old, ke_ns=old.ke_ns + round(shift_s * NS_PER_S))
        again = run([server], nts_lab.ca.cert_path, count=2, states=states)
        assert all(s.ok and s.authenticated for s in again)
        new = states[server].nts
        assert new is not None and new.c2s_key != old.c2s_key, shift_s
    # made under other trust anchors (the system's store, not the lab's CA): keyed again too
    mine = states[server].nts
    assert mine is not None
    states[server].nts = replace(mine, trust="system::")
    assert all(s.ok for s in run([server], nts_lab.ca.cert_path, count=1, states=states))
    assert states[server].nts is not None and states[server].nts.c2s_key != mine.c2s_key
