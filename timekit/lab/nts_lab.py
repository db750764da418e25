"""The lab's NTS: a certificate authority made at lab start, server certificates it signs, and chronyd
serving NTS-KE with them (`ntsserverkey`, `ntsservercert`), so timekit's NTS client is tested against
the real thing with certificates checked as on the internet (the lab's CA file instead of the system's
store).

    ca = make_ca(workdir / "ca")                              # ca.pem, the trust anchor
    cert, key = issue(ca, workdir / "srv", names=("localhost", "127.0.0.1"))
    server = start_nts_chronyd(port, offset_s, workdir / "srv", cert, key, ke_port=...)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from timekit.lab.chrony import ChronyServer

VALID_DAYS = 30


@dataclass(frozen=True)
class LabCa:
    """The lab's certificate authority: its certificate (the trust anchor clients are given) and key."""

    cert_path: Path
    key_path: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _readable(path: Path, data: bytes) -> Path:
    """Write `data`; readable by chronyd after it drops root to _chrony (the lab's key is no secret)."""
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return path


def make_ca(directory: Path) -> LabCa:
    """A fresh CA (P-256, valid from a day ago for VALID_DAYS) in `directory`: ca.pem and ca.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "timekit lab CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = _readable(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_path = _readable(directory / "ca.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_path, 0o600)  # only `issue` reads it; chronyd never does
    return LabCa(cert_path, key_path)


def issue(ca: LabCa, directory: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    """A server certificate for `names` (DNS names or IP addresses) signed by `ca`: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path = _readable(directory / "cert.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_path = _readable(directory / "key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def nts_conf(cert: Path, key: Path, ke_port: int, dump_dir: Path) -> str:
    """chronyd.conf lines serving NTS-KE on `ke_port` with `cert`/`key` (no helper processes: one
    chronyd process per lab server)."""
    import pwd

    from timekit.lab.chrony import _run_as

    dump_dir.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwnam(_run_as()[0])  # chronyd writes its server keys there after dropping root
    os.chown(dump_dir, user.pw_uid, user.pw_gid)
    os.chmod(dump_dir, 0o700)
    return (f"ntsserverkey {key}\nntsservercert {cert}\nntsport {ke_port}\nntsprocesses 0\n"
            f"ntsdumpdir {dump_dir}\n")


def start_nts_chronyd(port: int, offset_s: float, drift_ppm: float, workdir: Path, cert: Path, key: Path,
                      ke_port: int) -> ChronyServer:
    """A lab chronyd (its clock `offset_s` ahead, gaining `drift_ppm`) serving NTP on `port` and NTS-KE
    on `ke_port` with `cert`/`key`; its truth checked at start as every lab server's."""
    return ChronyServer.start(port, offset_s, drift_ppm, workdir,
                              extra_conf=nts_conf(cert, key, ke_port, workdir / "ntsdump"))


def nts_path_conf(ntp_server: str) -> str:
    """chronyd.conf line naming another NTPv4 server in its KE answers (`ntsntpserver`): the lab points
    NTS clients at an on-path proxy this way."""
    return f"ntsntpserver {ntp_server}\n"


# --- fault servers -----------------------------------------------------------------------------

KE_FAULTS = ("error", "warning", "critical", "no_cookies", "nak", "ok")


class FaultKeServer:
    """An NTS-KE server on 127.0.0.1 that answers every key exchange with one fault (`KE_FAULTS`):
    an Error record, a Warning record, an unknown critical record, no cookie, or good records pointing
    NTP at a responder that answers every request with an NTS NAK (`nak`); `ok` answers as a server
    should (with junk cookies), for a certificate test. Served with `cert`/`key` (a certificate for
    the wrong name makes the TLS fault). Runs in daemon threads until `stop()`."""

    def __init__(self, mode: str, cert: Path, key: Path) -> None:
        import socket
        import threading

        from OpenSSL import SSL

        if mode not in KE_FAULTS:
            raise ValueError(f"mode must be one of {KE_FAULTS}, got {mode!r}")
        self.mode = mode
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate_file(str(cert))
        ctx.use_privatekey_file(str(key))
        ctx.set_alpn_select_callback(lambda _c, protos: b"ntske/1" if b"ntske/1" in protos else b"")
        self._ctx = ctx
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self.ntp_port = int(self._udp.getsockname()[1])
        self._stopped = threading.Event()
        self.ke_count = 0
        for target in (self._serve_ke, self._serve_nak):
            threading.Thread(target=target, daemon=True).start()

    def _answer(self) -> bytes:
        import struct

        from timekit.collectors import nts

        rec = nts.encode_record
        proto = rec(nts.REC_NEXT_PROTOCOL, struct.pack(">H", 0))
        aead = rec(nts.REC_AEAD, struct.pack(">H", nts.AEAD_AES_SIV_CMAC_256))
        cookies = b"".join(rec(nts.REC_COOKIE, os.urandom(64), critical=False) for _ in range(8))
        port = rec(nts.REC_PORT, struct.pack(">H", self.ntp_port))
        body = {"error": rec(nts.REC_ERROR, struct.pack(">H", 1)),
                "warning": proto + aead + rec(nts.REC_WARNING, struct.pack(">H", 7)) + cookies,
                "critical": proto + aead + rec(0x4242, b"?") + cookies,
                "no_cookies": proto + aead,
                "nak": proto + aead + cookies + port,
                "ok": proto + aead + cookies + port}[self.mode]
        return body + rec(nts.REC_END)

    def _serve_ke(self) -> None:
        from OpenSSL import SSL

        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                continue
            try:
                sock.settimeout(5.0)
                sock.setblocking(True)
                conn = SSL.Connection(self._ctx, sock)
                conn.set_accept_state()
                conn.do_handshake()
                conn.recv(4096)  # the client's request (its records are not judged here)
                self.ke_count += 1
                conn.sendall(self._answer())
                conn.shutdown()
            except (SSL.Error, OSError):
                pass
            finally:
                sock.close()

    def _serve_nak(self) -> None:
        """Every request gets an NTS NAK: stratum 0, kiss code NTSN, our origin, its identifier echoed."""
        from timekit.collectors import nts

        self._udp.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                data, peer = self._udp.recvfrom(4096)
            except OSError:
                continue
            if len(data) < 48:
                continue
            uid = next((b for _, t, b in nts.split_extension_fields(data) if t == nts.EF_UNIQUE_ID), b"")
            head = bytearray(48)
            head[0] = (0 << 6) | (4 << 3) | 4
            head[12:16] = nts.NAK_REFID
            head[24:32] = data[40:48]
            self._udp.sendto(bytes(head) + nts.extension_field(nts.EF_UNIQUE_ID, uid), peer)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._udp.close()


PATH_MODES = ("pass", "rewrite", "forge", "replay")


class OnPathProxy:
    """A UDP forwarder on `listen` (host, port) to `upstream` that sits on the path of NTP: `pass`
    forwards as is, `rewrite` adds `shift_s` to the server's receive and transmit timestamps (what an
    attacker on the path does to move a client's offset), `forge` replaces an NTS authenticator's
    ciphertext with random bytes, `replay` answers each request with the previous reply. It keeps every
    NTS cookie it sees in requests (`cookies_seen`), to check none is sent twice. Change `mode` at will."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], mode: str = "pass",
                 shift_s: float = 0.5) -> None:
        import socket
        import threading

        self.mode, self.shift_s, self.upstream = mode, shift_s, upstream
        self.cookies_seen: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(listen)
        self._stopped = threading.Event()
        self._previous: bytes | None = None
        threading.Thread(target=self._run, daemon=True).start()

    def _altered(self, reply: bytes) -> bytes:
        import struct

        from timekit.collectors import nts

        if self.mode == "rewrite":
            shift = round(self.shift_s * 2**32)
            out = bytearray(reply)
            for at in (32, 40):  # receive (T2) and transmit (T3) timestamps
                (ts,) = struct.unpack_from(">Q", out, at)
                struct.pack_into(">Q", out, at, (ts + shift) % 2**64)
            return bytes(out)
        if self.mode == "forge":
            out = bytearray(reply)
            for off, ftype, body in nts.split_extension_fields(reply):
                if ftype == nts.EF_AUTHENTICATOR and len(body) >= 4:
                    nl, cl = struct.unpack_from(">HH", body, 0)
                    at = off + 4 + 4 + nl + (-nl) % 4
                    out[at:at + cl] = os.urandom(cl)
            return bytes(out)
        return reply

    def _run(self) -> None:
        import socket

        from timekit.collectors import nts

        self._sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                data, client = self._sock.recvfrom(4096)
            except OSError:
                continue
            self.cookies_seen += [b for _, t, b in nts.split_extension_fields(data) if t == nts.EF_COOKIE]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(1.0)
                try:
                    up.sendto(data, self.upstream)
                    reply, _ = up.recvfrom(4096)
                except OSError:
                    continue
            answer = self._previous if self.mode == "replay" and self._previous is not None else reply
            self._previous = reply
            try:
                self._sock.sendto(self._altered(answer), client)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()
