"""Network Time Security (RFC 8915) for the NTP client: the key exchange, the extension fields, AES-SIV.

NTS-KE: a TLS 1.3 connection (ALPN `ntske/1`) to the server's KE port (4460), certificates checked
against the system's trust store (or `SSL_CERT_FILE`, or a CA file) and the name the user gave. We
send: next protocol NTPv4, AEAD AES-SIV-CMAC-256, end. The server answers with the same two, eight
cookies and optionally the NTPv4 server and port to use. Both keys come from the TLS exporter
(label `EXPORTER-network-time-security`, context protocol 0 / AEAD 15 / 0 client-to-server or 1
server-to-client, 32 bytes). pyOpenSSL gives the exporter (the standard library's ssl does not),
`service_identity` checks the name, `cryptography` the AEAD.

Each NTP request carries a Unique Identifier (32 random bytes), one cookie (used once, never again),
placeholders asking for enough new cookies to hold eight, and an Authenticator: AES-SIV over the
header and every extension field before it, with a fresh 16-byte nonce. A reply is verified before
anything else is believed: its Unique Identifier must be ours and its Authenticator must open with
the server-to-client key over everything before it; the new cookies come out of its ciphertext. A
kiss-o'-death NTSN echoing our identifier is the server's NAK: the keys are forgotten (re-key).

Failures raise `NtsError` with an error code: `nts_tls` (TLS, certificate, name or ALPN),
`nts_ke_error` (the server's Error record, or an answer that breaks the protocol), `nts_ke_warning`
(a Warning record: not understood, so not used), `nts_unknown_critical` (a critical record we do not
know), `nts_no_cookies` (no cookie to send and none from the KE), `nts_bad_auth` (a reply whose
identifier or authenticator does not verify), `nts_nak`. Nothing here falls back to plain NTP.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from timekit.address import DEFAULT_NTP_PORT, NTS_KE_DEFAULT_PORT
from timekit.collectors.clocks import realtime_ns
from timekit.collectors.ntp_packet import NTP_HEADER_LEN
from timekit.vocabulary import ErrorCode

T = TypeVar("T")
ALPN = b"ntske/1"
EXPORTER_LABEL = b"EXPORTER-network-time-security"
PROTOCOL_NTPV4 = 0
AEAD_AES_SIV_CMAC_256 = 15
KEY_LEN = 32  # bytes; AES-SIV-CMAC-256: two AES-128 keys

REC_END, REC_NEXT_PROTOCOL, REC_ERROR, REC_WARNING, REC_AEAD, REC_COOKIE, REC_SERVER, REC_PORT = range(8)
CRITICAL_BIT = 0x8000
KE_ERRORS = {0: "unrecognized critical record", 1: "bad request", 2: "internal server error"}
MAX_KE_ANSWER_BYTES = 65536  # a KE answer is a few hundred bytes; a server that streams is not one

EF_UNIQUE_ID, EF_COOKIE, EF_PLACEHOLDER, EF_AUTHENTICATOR = 0x0104, 0x0204, 0x0304, 0x0404
UID_LEN = 32  # bytes
NONCE_LEN = 16  # bytes
COOKIE_TARGET = 8  # cookies a client keeps (RFC 8915 §5.7: as many as the KE gives, 8)
NAK_REFID = b"NTSN"


class NtsError(Exception):
    """An NTS failure with its error code (never a reason to fall back to plain NTP)."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: ErrorCode = code
        self.detail = detail


@dataclass
class NtsSession:
    """One key exchange's outcome: the keys, where to send NTP, and the cookies left (each used once)."""

    c2s_key: bytes
    s2c_key: bytes
    ntp_host: str
    ntp_port: int
    cookies: list[bytes] = field(default_factory=list)
    ke_ns: int = 0  # CLOCK_REALTIME of the exchange
    trust: str = ""  # the trust anchors that vouched for it (`trust_of`)

    def add_cookies(self, cookies: Sequence[bytes]) -> None:
        """New cookies from an authentic reply: each once, at most COOKIE_TARGET kept (a replayed reply
        brings the same ones again; a server cannot grow the jar without bound)."""
        for c in cookies:
            if c not in self.cookies and len(self.cookies) < COOKIE_TARGET:
                self.cookies.append(c)

    def take_cookie(self) -> bytes:
        """The oldest cookie, removed: a cookie is never sent twice (RFC 8915 §6: unlinkability)."""
        if not self.cookies:
            raise NtsError("nts_no_cookies", "no NTS cookie left: a new key exchange is needed")
        return self.cookies.pop(0)


# --- NTS-KE records --------------------------------------------------------------------------

def encode_record(rtype: int, body: bytes = b"", critical: bool = True) -> bytes:
    """One NTS-KE record: critical bit and type (16 bits), body length (16 bits), body."""
    return struct.pack(">HH", (CRITICAL_BIT if critical else 0) | rtype, len(body)) + body


def ke_request() -> bytes:
    """Our request: NTPv4 as the next protocol, AES-SIV-CMAC-256 as the AEAD, end of message."""
    return (encode_record(REC_NEXT_PROTOCOL, struct.pack(">H", PROTOCOL_NTPV4))
            + encode_record(REC_AEAD, struct.pack(">H", AEAD_AES_SIV_CMAC_256)) + encode_record(REC_END))


def split_records(data: bytes) -> tuple[list[tuple[bool, int, bytes]], bool]:
    """The whole records in `data` as (critical, type, body), and whether End of Message was among them."""
    out: list[tuple[bool, int, bytes]] = []
    i = 0
    while i + 4 <= len(data):
        head, length = struct.unpack_from(">HH", data, i)
        if i + 4 + length > len(data):
            break
        rtype = head & ~CRITICAL_BIT
        out.append((bool(head & CRITICAL_BIT), rtype, data[i + 4:i + 4 + length]))
        i += 4 + length
        if rtype == REC_END:
            return out, True
    return out, False


@dataclass(frozen=True)
class KeAnswer:
    """What a KE answer says: the cookies and, if the server named them, NTP's host and port."""

    cookies: tuple[bytes, ...]
    server: str | None
    port: int | None


def interpret_ke_answer(records: Sequence[tuple[bool, int, bytes]]) -> KeAnswer:
    """The server's records, checked (RFC 8915 §4); NtsError with the failure's code otherwise."""
    cookies: list[bytes] = []
    server = port = None
    protocols = aeads = None
    for critical, rtype, body in records:
        if rtype == REC_ERROR:
            code = struct.unpack(">H", body[:2])[0] if len(body) >= 2 else -1
            raise NtsError("nts_ke_error", f"NTS-KE server error {code} ({KE_ERRORS.get(code, 'unknown')})")
        if rtype == REC_WARNING:
            code = struct.unpack(">H", body[:2])[0] if len(body) >= 2 else -1
            raise NtsError("nts_ke_warning", f"NTS-KE server warning {code}, which timekit does not "
                           "understand (RFC 8915 §4.1.4: such an answer is not used)")
        if rtype == REC_NEXT_PROTOCOL:
            protocols = [struct.unpack_from(">H", body, j)[0] for j in range(0, len(body) - 1, 2)]
        elif rtype == REC_AEAD:
            aeads = [struct.unpack_from(">H", body, j)[0] for j in range(0, len(body) - 1, 2)]
        elif rtype == REC_COOKIE:
            if body:
                cookies.append(body)
        elif rtype == REC_SERVER:
            try:
                server = body.decode("ascii")
            except UnicodeDecodeError:
                raise NtsError("nts_ke_error", "NTS-KE server named a non-ASCII NTPv4 server") from None
        elif rtype == REC_PORT:
            if len(body) != 2:
                raise NtsError("nts_ke_error", f"NTS-KE port record of {len(body)} bytes")
            port = struct.unpack(">H", body)[0]
        elif rtype != REC_END and critical:
            raise NtsError("nts_unknown_critical", f"NTS-KE server sent critical record type {rtype}, "
                           "which timekit does not know")
    if protocols != [PROTOCOL_NTPV4]:
        raise NtsError("nts_ke_error", f"NTS-KE server chose next protocol {protocols}, not NTPv4 [0]")
    if aeads != [AEAD_AES_SIV_CMAC_256]:
        raise NtsError("nts_ke_error", f"NTS-KE server chose AEAD {aeads}, not AES-SIV-CMAC-256 [15]")
    if not cookies:
        raise NtsError("nts_no_cookies", "NTS-KE server gave no cookie")
    return KeAnswer(tuple(cookies), server, port)


def _tls_wait(sock: socket.socket, want_write: bool, deadline: float) -> None:
    """Wait until the socket is readable (or writable) or the deadline passes (poll: any fd number)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("NTS-KE timed out")
    poller = select.poll()
    poller.register(sock, select.POLLOUT if want_write else select.POLLIN)
    if not poller.poll(remaining * 1000):
        raise TimeoutError("NTS-KE timed out")


def key_exchange(host: str, port: int = NTS_KE_DEFAULT_PORT, *, timeout_s: float = 5.0,
                 cafile: str | None = None) -> NtsSession:
    """One NTS key exchange with `host`:`port` (blocking, at most `timeout_s`). Raises NtsError (every
    TLS, certificate or protocol failure, with its code), OSError (connect) or TimeoutError."""
    from OpenSSL import SSL
    from service_identity import CertificateError

    try:
        return _key_exchange(host, port, timeout_s, cafile)
    except (SSL.Error, CertificateError, ValueError, UnicodeError) as exc:  # never a traceback: a code
        words = _ssl_words(exc) if isinstance(exc, SSL.Error) else str(exc) or type(exc).__name__
        raise NtsError("nts_tls", f"NTS-KE with {host}:{port} failed: {words}") from None


def trust_of(cafile: str | None) -> str:
    """What vouched for a session's keys: the CA file's SHA-256, or the system's store (and
    SSL_CERT_FILE). A session made under other trust anchors is not used (it is keyed again)."""
    import hashlib

    if cafile:
        try:
            with open(cafile, "rb") as fh:
                return "ca:" + hashlib.sha256(fh.read(1 << 22)).hexdigest()
        except OSError:
            return "ca:unreadable:" + cafile
    return "system:" + os.environ.get("SSL_CERT_FILE", "") + ":" + os.environ.get("SSL_CERT_DIR", "")


def _key_exchange(host: str, port: int, timeout_s: float, cafile: str | None) -> NtsSession:
    import ipaddress

    from OpenSSL import SSL
    from service_identity import VerificationError
    from service_identity.pyopenssl import verify_hostname, verify_ip_address

    deadline = time.monotonic() + timeout_s
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)  # RFC 8915 §3: TLS 1.3 or later
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.set_default_verify_paths()  # the system's store; OpenSSL honours SSL_CERT_FILE/SSL_CERT_DIR
    ctx.set_verify(SSL.VERIFY_PEER, lambda _c, _x, _e, _d, ok: bool(ok))
    ctx.set_alpn_protos([ALPN])
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        ip = None
    sock = socket.create_connection((host, port), timeout=max(0.001, deadline - time.monotonic()))
    try:
        # small TLS records both ways: without NODELAY, Nagle waits for the delayed ACK (40 ms on Linux)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = SSL.Connection(ctx, sock)
        if ip is None:
            conn.set_tlsext_host_name(host.encode("idna"))
        conn.set_connect_state()
        _tls_loop(conn.do_handshake, sock, deadline)
        try:
            if ip is None:
                verify_hostname(conn, host)
            else:
                verify_ip_address(conn, str(ip))
        except VerificationError as exc:
            raise NtsError("nts_tls", f"NTS-KE certificate does not name {host}: {exc}") from None
        if conn.get_alpn_proto_negotiated() != ALPN:
            raise NtsError("nts_tls", "NTS-KE server did not agree to ALPN ntske/1")
        _tls_loop(lambda: conn.sendall(ke_request()), sock, deadline)
        data = b""
        done = False
        while not done and len(data) < MAX_KE_ANSWER_BYTES:
            try:
                chunk = _tls_loop(lambda: conn.recv(4096), sock, deadline)
            except SSL.ZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
            done = split_records(data)[1]
        records, done = split_records(data)
        if not done:
            raise NtsError("nts_ke_error", f"NTS-KE answer ended without End of Message ({len(data)} bytes)")
        answer = interpret_ke_answer(records)
        keys = [conn.export_keying_material(EXPORTER_LABEL, KEY_LEN,
                                            struct.pack(">HHB", PROTOCOL_NTPV4, AEAD_AES_SIV_CMAC_256, d))
                for d in (0, 1)]
        with contextlib.suppress(SSL.Error):
            conn.shutdown()
    finally:
        sock.close()
    return NtsSession(keys[0], keys[1], answer.server or host, answer.port or DEFAULT_NTP_PORT,
                      list(dict.fromkeys(answer.cookies))[:COOKIE_TARGET], realtime_ns(), trust_of(cafile))


def _tls_loop(fn: Callable[[], T], sock: socket.socket, deadline: float) -> T:
    """Call a pyOpenSSL operation on a non-blocking socket until it completes or the deadline passes."""
    from OpenSSL import SSL

    for _ in range(100_000):  # bounded; the deadline ends it first
        try:
            return fn()
        except SSL.WantReadError:
            _tls_wait(sock, False, deadline)
        except SSL.WantWriteError:
            _tls_wait(sock, True, deadline)
    raise TimeoutError("NTS-KE did not complete")


def _ssl_words(exc: Exception) -> str:
    """pyOpenSSL's error list as one line ('certificate verify failed', ...)."""
    parts = []
    for item in getattr(exc, "args", [[]])[0] or []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return "; ".join(parts) or str(exc) or type(exc).__name__


# --- NTP extension fields ----------------------------------------------------------------------

def extension_field(ftype: int, body: bytes) -> bytes:
    """An NTP extension field (RFC 7822): type, length (the whole field), body zero-padded to 4 bytes."""
    pad = (-len(body)) % 4
    return struct.pack(">HH", ftype, 4 + len(body) + pad) + body + b"\0" * pad


def split_extension_fields(data: bytes, start: int = NTP_HEADER_LEN) -> list[tuple[int, int, bytes]]:
    """(offset, type, body) of each whole extension field from `start`; stops at the first that does not
    fit (a legacy MAC after them is no extension field)."""
    out = []
    i = start
    while i + 4 <= len(data):
        ftype, length = struct.unpack_from(">HH", data, i)
        if length < 4 or length % 4 or i + length > len(data):
            break
        out.append((i, ftype, data[i + 4:i + length]))
        i += length
    return out


def nts_request(header: bytes, session: NtsSession, uid: bytes) -> bytes:
    """`header` (48 bytes) with the Unique Identifier, one cookie (taken from the session), enough
    placeholders to get back to COOKIE_TARGET cookies, and the Authenticator over all of it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    cookie = session.take_cookie()
    fields = extension_field(EF_UNIQUE_ID, uid) + extension_field(EF_COOKIE, cookie)
    for _ in range(max(0, COOKIE_TARGET - 1 - len(session.cookies))):
        fields += extension_field(EF_PLACEHOLDER, bytes(len(cookie)))
    ad = header + fields
    nonce = os.urandom(NONCE_LEN)
    sealed = AESSIV(session.c2s_key).encrypt(b"", [ad, nonce])
    return ad + extension_field(EF_AUTHENTICATOR, struct.pack(">HH", len(nonce), len(sealed)) + nonce
                                + b"\0" * ((-len(nonce)) % 4) + sealed)


def verify_nts_reply(data: bytes, session: NtsSession, uid: bytes) -> list[bytes]:
    """Verify a reply's NTS fields before anything else: our Unique Identifier, then the Authenticator
    opened with the server-to-client key over everything before it. Returns the new cookies from its
    ciphertext; raises NtsError `nts_nak` (a kiss NTSN with our identifier) or `nts_bad_auth`."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    if len(data) < NTP_HEADER_LEN:
        raise NtsError("nts_bad_auth", f"{len(data)} bytes: no NTP header")
    fields = split_extension_fields(data)
    ours = any(ftype == EF_UNIQUE_ID and body[:UID_LEN] == uid for _, ftype, body in fields)
    if data[1] == 0 and data[12:16] == NAK_REFID:
        if not ours:
            raise NtsError("nts_bad_auth", "an NTS NAK that does not echo our unique identifier")
        raise NtsError("nts_nak", "the server answered NTS NAK (it cannot read our cookie): re-key")
    if not ours:
        raise NtsError("nts_bad_auth", "the reply does not echo our unique identifier")
    auth = next(((off, body) for off, ftype, body in fields if ftype == EF_AUTHENTICATOR), None)
    if auth is None:
        raise NtsError("nts_bad_auth", "the reply carries no NTS authenticator")
    off, body = auth
    # our identifier must be inside what the authenticator covers: one appended after it (to a reply
    # authentic for another request) proves nothing
    if not any(ftype == EF_UNIQUE_ID and b[:UID_LEN] == uid for at, ftype, b in fields if at < off):
        raise NtsError("nts_bad_auth", "our unique identifier is not in the authenticated part of the reply")
    if len(body) < 4:
        raise NtsError("nts_bad_auth", "the NTS authenticator is too short")
    nonce_len, ct_len = struct.unpack_from(">HH", body, 0)
    ct_at = 4 + nonce_len + (-nonce_len) % 4
    if nonce_len == 0 or ct_len < 16 or ct_at + ct_len > len(body):
        raise NtsError("nts_bad_auth", f"the NTS authenticator's lengths do not fit (nonce {nonce_len}, "
                       f"ciphertext {ct_len})")
    try:
        plain = AESSIV(session.s2c_key).decrypt(body[ct_at:ct_at + ct_len],
                                                [data[:off], body[4:4 + nonce_len]])
    except InvalidTag:
        raise NtsError("nts_bad_auth", "the NTS authenticator does not verify (forged or altered)") from None
    return [b for _, ftype, b in split_extension_fields(plain, 0) if ftype == EF_COOKIE and b]
