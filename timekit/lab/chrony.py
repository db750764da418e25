"""Real chronyd NTP servers on loopback with *known* offsets and drifts (the reference lab).

A lab server is Debian's ``chronyd`` in server mode (``-x``: it never touches the
system clock) run under libfaketime, so its clock is

    server(t) = t + offset_s + (t - start) * drift_ppm * 1e-6

for local CLOCK_REALTIME ``t``. :class:`ServerTruth` carries that line.

Facts measured on Debian bookworm (chrony 4.3, libfaketime 0.9.10):

- ``FAKETIME="+0.250000000 x1.000100000000"`` is +250 ms and +100 ppm;
  ``"-0.080000000 x0.999800000000"`` is -80 ms and -200 ppm. The offset must
  carry a sign, fractions use ``.`` (we pin ``LC_ALL=C``), the rate needs an
  offset in front of it (``"+0 x2"``, never ``"x2"``).
- libfaketime anchors the rate at its own start (its ELF constructor, i.e. when
  chronyd is exec'd), not at the first clock read: fake(t) = t + offset +
  (t - t_exec) * (rate - 1). We take ``start_ns`` just before spawning; the few
  ms until exec cost drift * few ms (0.5 us at 100 ppm, 5 ms).
- ``FAKETIME_NO_CACHE`` is not needed (the env value never changes; re-parsing
  every 10 s keeps the same anchor). ``FAKETIME_DONT_FAKE_MONOTONIC`` is not
  set: chronyd works with the faked monotonic clock, and the option breaks
  ``clock_nanosleep`` in other programs.
- chronyd takes receive timestamps from the kernel (``SO_TIMESTAMP*``), which
  libfaketime does not fake (else delay comes out as about -offset); ``shim.c``
  refuses SO_TIMESTAMPING (transmit stamps) and rewrites every SCM_TIMESTAMPNS
  receive stamp from the real clock to the faked one, so T2 is the kernel's
  instant as on a real server (refusing them too put the VM's scheduler wake-up
  latency, 65-177 us, into T2).
- As root chronyd drops to ``_chrony`` after reading its config and writing
  the pidfile; it then cannot delete its own pidfile (we remove it). A stale
  pidfile whose pid is still alive (even a zombie) makes the next start fail.
- ``bindcmdaddress /`` disables the Unix command socket, ``cmdport 0`` the UDP
  one; ``-4`` plus ``bindaddress 127.0.0.1`` keeps the server on loopback.
- chronyd answers (LI 0, the configured stratum) about 0.3 s after exec; we
  poll with a real NTP query until it does.
- The client's command socket is created after the privilege drop, so every
  directory above it must be searchable by ``_chrony`` (pytest's 0700
  ``/tmp/pytest-of-root`` is not): we fall back to a ``/tmp/timekit-chronyc-*``
  directory then (also when the path would not fit ``sun_path``).
- Measured here (kernel receive stamps, 4 Hz): offset vs truth median -1.9 us,
  std 1.6 us; delay 7.8 us median; drift over 30 s within 0.01 ppm. Without the shim: offset +125 ms (half),
  delay -250 ms.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timekit.collectors.ntp_packet import unwrap_timestamp
from timekit.errors import CollectorError
from timekit.units import NS_PER_S, PPM, ntp_fixed_to_unix_ns, unix_ns_to_ntp_fixed

__all__ = [
    "ChronyClient",
    "ChronyServer",
    "ServerTruth",
    "build_shim",
    "default_cache_dir",
    "faketime_spec",
    "find_libfaketime",
    "lab_prerequisites",
]

LOOPBACK = "127.0.0.1"
SHIM_SOURCE = Path(__file__).with_name("shim.c")
SHIM_NAME = "timekit-lab-shim.so"
LOG_TAIL_LINES = 4
STOP_TIMEOUT_S = 3.0
CHRONYC_TIMEOUT_S = 5.0
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_CHRONY_USER = "_chrony"
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes; chronyc adds its own socket beside


# --------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class ServerTruth:
    """The known clock error of one lab server.

    offset_s:  server clock minus true (local CLOCK_REALTIME) time at ``start_ns``, seconds;
               positive = the server is ahead.
    drift_ppm: server rate error, ppm; +100 means the server gains 100 us per second.
               (From the local host's side, DESIGN's ``drift_ppm`` is then -100.)
    start_ns:  local CLOCK_REALTIME (ns) of the instant the fake clock's offset and
               rate are anchored to.
    """

    offset_s: float
    drift_ppm: float
    start_ns: int

    def offset_at(self, t_ns: int) -> float:
        """True offset (server - local, seconds) at local CLOCK_REALTIME ``t_ns``."""
        return self.offset_s + self.drift_ppm * PPM * ((t_ns - self.start_ns) / NS_PER_S)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for a lab state file)."""
        return {"offset_s": self.offset_s, "drift_ppm": self.drift_ppm, "start_ns": self.start_ns}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerTruth:
        """Inverse of :meth:`to_dict`."""
        return cls(
            offset_s=float(d["offset_s"]),
            drift_ppm=float(d["drift_ppm"]),
            start_ns=int(d["start_ns"]),
        )


def faketime_spec(offset_s: float, drift_ppm: float) -> str:
    """libfaketime ``FAKETIME`` value for an offset (s) and a rate error (ppm).

    >>> faketime_spec(0.25, 100)
    '+0.250000000 x1.000100000000'
    """
    rate = 1.0 + drift_ppm * PPM
    return f"{offset_s:+.9f} x{rate:.12f}"


# --------------------------------------------------------------------------- prerequisites


def _which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (chronyd lives there)."""
    found = shutil.which(name)
    if found:
        return found
    for d in _SBIN_DIRS:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def find_libfaketime() -> Path | None:
    """Path of ``libfaketime.so.1`` (any multiarch directory), or None."""
    patterns = (
        "/usr/lib/*/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/lib64/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/libfaketime.so.1",
    )
    for pat in patterns:
        hits = sorted(glob.glob(pat))
        if hits:
            return Path(hits[0])
    return None


def lab_prerequisites() -> list[str]:
    """Human messages naming what the lab lacks (chronyd, chronyc, libfaketime, gcc); [] when ok."""
    missing: list[str] = []
    if _which("chronyd") is None:
        missing.append("chronyd not found (Debian package 'chrony')")
    if _which("chronyc") is None:
        missing.append("chronyc not found (Debian package 'chrony')")
    if find_libfaketime() is None:
        missing.append("libfaketime.so.1 not found (Debian package 'libfaketime')")
    if _which("gcc") is None:
        missing.append("gcc not found (needed to build the lab's setsockopt shim)")
    if not SHIM_SOURCE.is_file():
        missing.append(f"shim source missing: {SHIM_SOURCE}")
    return missing


# --------------------------------------------------------------------------- shim


def default_cache_dir() -> Path:
    """Where the compiled shim is cached: ``$XDG_CACHE_HOME/timekit/lab`` (or ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "timekit" / "lab"


def build_shim(cache_dir: Path) -> Path:
    """Compile ``shim.c`` into ``cache_dir`` (only when missing or older than the source).

    Returns the path of the shared object. The build writes a temp file and renames
    it, so concurrent callers never see half a library. Raises CollectorError.
    """
    cache_dir = Path(cache_dir)
    out = cache_dir / SHIM_NAME
    try:
        src_mtime = SHIM_SOURCE.stat().st_mtime_ns
    except OSError as e:
        raise CollectorError(f"lab shim source unreadable: {SHIM_SOURCE}: {e}") from e
    with contextlib.suppress(OSError):
        if out.stat().st_mtime_ns >= src_mtime:
            return out
    gcc = _which("gcc")
    if gcc is None:
        raise CollectorError("cannot build the lab shim: gcc not found")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CollectorError(f"cannot create shim cache dir {cache_dir}: {e}") from e
    fd, tmp = tempfile.mkstemp(prefix=".shim-", suffix=".so", dir=cache_dir)
    os.close(fd)
    try:
        cmd = [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, str(SHIM_SOURCE), "-ldl"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            err = " ".join(res.stderr.split())[-300:]
            raise CollectorError(f"building the lab shim failed (gcc exit {res.returncode}): {err}")
        os.chmod(tmp, 0o755)  # chronyd must map it after dropping to _chrony
        os.replace(tmp, out)
    except subprocess.TimeoutExpired as e:
        raise CollectorError("building the lab shim timed out (gcc > 60 s)") from e
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return out


# --------------------------------------------------------------------------- helpers


def _log_tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    """Last ``n`` non-empty lines of a log, joined on one line ('' when none)."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    return " | ".join([ln for ln in lines if ln][-n:])


def _ntp_exchange(port: int, timeout_s: float) -> tuple[int, int, int, int, int, int] | None:
    """One mode-3 query to 127.0.0.1:port: (leap, stratum, T1, T2, T3, T4 in Unix ns) of a sane
    reply (ours, mode 4), else None. T1 and T4 are read in user space around the exchange."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        t1_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
        tx = unix_ns_to_ntp_fixed(t1_ns) & 0xFFFF_FFFF_FFFF_FFFF
        req = bytes([(0 << 6) | (4 << 3) | 3]) + bytes(39) + struct.pack("!Q", tx)
        try:
            s.sendto(req, (LOOPBACK, port))
            data = s.recv(1024)
        except OSError:
            return None
        t4_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
    if len(data) < 48 or data[0] & 0x7 != 4 or struct.unpack("!Q", data[24:32])[0] != tx:
        return None
    pivot = unix_ns_to_ntp_fixed(t1_ns)
    t2_ns, t3_ns = (ntp_fixed_to_unix_ns(unwrap_timestamp(struct.unpack("!Q", data[i:i + 8])[0], pivot))
                    for i in (32, 40))
    return data[0] >> 6, data[1], t1_ns, t2_ns, t3_ns, t4_ns


def _ntp_probe(port: int, timeout_s: float) -> tuple[int, int] | None:
    """One mode-3 query to 127.0.0.1:port; (leap, stratum) of a sane reply, else None."""
    got = _ntp_exchange(port, timeout_s)
    return None if got is None else (got[0], got[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _run_as() -> tuple[str, list[str]]:
    """(user chronyd runs as, extra chronyd flags).

    As root: ``_chrony`` when it exists (chronyd's own privilege drop), else root.
    Otherwise: the current user with ``-U`` (chronyd's root check off).
    """
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_CHRONY_USER)
            return _CHRONY_USER, []
        except KeyError:
            return "root", []
    return pwd.getpwuid(os.geteuid()).pw_name, ["-U"]


def _traversable_by(path: Path, pw: pwd.struct_passwd) -> bool:
    """True when user ``pw`` may search every directory from / down to ``path``."""
    for d in [path, *path.parents]:
        try:
            st = d.stat()
        except OSError:
            return False
        if pw.pw_uid == 0:
            continue
        if st.st_uid == pw.pw_uid:
            bit = 0o100
        elif st.st_gid == pw.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class _Chronyd:
    """A chronyd process we started (child or detached): liveness and a careful stop."""

    def __init__(self, pid: int, conf: Path, pidfile: Path, proc: subprocess.Popen | None) -> None:
        self.pid = pid
        self._conf = conf
        self._pidfile = pidfile
        self._proc = proc
        self._stopped = False

    def ours(self) -> bool:
        """True while ``pid`` is a chronyd running our config (guards against pid reuse)."""
        args = _cmdline(self.pid)
        return bool(args) and "chronyd" in os.path.basename(args[0]) and str(self._conf) in args

    def alive(self) -> bool:
        if self._stopped:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        return self.ours() and not _is_zombie(self.pid)

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=STOP_TIMEOUT_S)
        elif self.ours():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while time.monotonic() < deadline and self.ours() and not _is_zombie(self.pid):
                time.sleep(0.02)
            if self.ours() and not _is_zombie(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self._pidfile.unlink()  # chronyd (as _chrony) cannot remove it itself


def _spawn(argv: list[str], env: dict[str, str], log: Path, detach: bool) -> subprocess.Popen:
    with open(log, "ab") as logf:
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=detach,
                close_fds=True,
            )
        except OSError as e:
            raise CollectorError(f"cannot start {argv[0]}: {e}") from e


def _measured_truth(anchor_file: Path, drift_ppm: float, address: str) -> ServerTruth:
    """The truth line from the shim's (real, fake) pair, read at chronyd's first packet.

    Exact where a spawn-time reading is a guess (a loaded machine can put seconds between Popen and
    exec: at 100 ppm, 100 µs of error a second in every later "true" offset). No anchor is an error,
    never a guess: the lab's truth is what every lab test is judged against.
    """
    try:
        real_ns, fake_ns = (int(x) for x in anchor_file.read_text().split())
    except (OSError, ValueError) as e:
        raise CollectorError(f"lab server {address}: the shim wrote no clock anchor "
                             f"({anchor_file}: {e})") from e
    return ServerTruth(offset_s=(fake_ns - real_ns) / NS_PER_S, drift_ppm=drift_ppm, start_ns=real_ns)


TRUTH_CHECK_QUERIES = 12
TRUTH_CHECK_SLACK_S = 50e-6  # beyond delay/2: clock reads in Python around a user-space exchange
TRUTH_CHECK_ATTEMPTS = 3


def _truth_check(server: ChronyServer) -> str:
    """'' when the server answers on its anchored truth line (the lowest-delay of a few queries
    within delay/2 + 50 µs of it: NTP's own bound), else a one-line account of how far off it is."""
    best: tuple[float, float] | None = None  # (delay s, error s)
    for _ in range(TRUTH_CHECK_QUERIES):
        got = _ntp_exchange(server.port, 0.5)
        if got is None:
            continue
        t1, t2, t3, t4 = got[2:]
        delay_s = ((t4 - t1) - (t3 - t2)) / NS_PER_S
        offset_s = ((t2 - t1) + (t3 - t4)) / 2 / NS_PER_S
        error_s = offset_s - server.truth.offset_at((t1 + t4) // 2)
        if best is None or delay_s < best[0]:
            best = (delay_s, error_s)
    if best is None:
        return f"lab server {server.address} stopped answering its truth check"
    delay_s, error_s = best
    if abs(error_s) <= delay_s / 2 + TRUTH_CHECK_SLACK_S:
        return ""
    return (f"lab server {server.address} answers {error_s * 1e6:+.1f} µs off its anchored truth "
            f"(delay {delay_s * 1e6:.1f} µs; anchor {server.truth.start_ns} ns, "
            f"offset {server.truth.offset_s:+.9f} s)")


def _wait_port_free(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(1000):  # bounded; the deadline ends it first
        if _port_free(port) or time.monotonic() >= deadline:
            return
        time.sleep(0.02)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKETIME", "LD_PRELOAD"))}
    env["LC_ALL"] = "C"  # libfaketime parses "0.25" with the C library's locale
    return env


# --------------------------------------------------------------------------- server


class ChronyServer:
    """One chronyd NTP server on 127.0.0.1:``port`` whose clock error is ``truth``.

    port:    UDP port on 127.0.0.1.
    truth:   the server's known offset/drift line (see :class:`ServerTruth`).
    pid:     chronyd's process id.
    workdir: directory with ``chronyd.conf``, ``chronyd.pid``, ``chronyd.log``.
    """

    def __init__(
        self,
        port: int,
        truth: ServerTruth,
        pid: int,
        workdir: Path,
        _proc: subprocess.Popen | None = None,
    ) -> None:
        self.port = port
        self.truth = truth
        self.pid = pid
        self.workdir = Path(workdir)
        self._chronyd = _Chronyd(pid, self.workdir / "chronyd.conf", self.workdir / "chronyd.pid", _proc)

    def __repr__(self) -> str:
        return (
            f"ChronyServer(port={self.port}, pid={self.pid}, offset_s={self.truth.offset_s}, "
            f"drift_ppm={self.truth.drift_ppm})"
        )

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{LOOPBACK}:{self.port}"

    @classmethod
    def start(
        cls,
        port: int,
        offset_s: float,
        drift_ppm: float,
        workdir: Path,
        stratum: int = 1,
        detach: bool = False,
        ready_timeout_s: float = 10.0,
        cache_dir: Path | None = None,
        extra_conf: str = "",
        check_truth: bool = True,
    ) -> ChronyServer:
        """Start chronyd serving on 127.0.0.1:``port`` with a clock ``offset_s`` seconds
        ahead of true time, gaining ``drift_ppm`` ppm; wait until it answers NTP.

        ``detach=True`` puts chronyd in its own session so it outlives this process
        (stop it later via ``ChronyServer.from_dict(state).stop()``). ``cache_dir``
        holds the compiled shim (default :func:`default_cache_dir`). ``extra_conf`` is appended to
        chronyd.conf (an upstream ``server`` line, ``leapsecmode``, ``smoothtime``: the lab's leap
        smear). ``check_truth``: the answers must match the anchored truth (off for a server that
        syncs to an upstream). Raises CollectorError (one line, with the tail of chronyd's log) on
        failure.
        """
        if not 1 <= port <= 65535:
            raise CollectorError(f"lab server port out of range: {port}")
        if not 1 <= stratum <= 15:
            raise CollectorError(f"lab server stratum must be 1..15, got {stratum}")
        if not -1e5 < drift_ppm < 1e5:
            raise CollectorError(f"lab server drift must be within +-1e5 ppm, got {drift_ppm}")
        missing = lab_prerequisites()
        if missing:
            raise CollectorError("reference lab unavailable: " + "; ".join(missing))
        chronyd = _which("chronyd")
        libfaketime = find_libfaketime()
        assert chronyd is not None and libfaketime is not None  # checked above
        shim = build_shim(cache_dir if cache_dir is not None else default_cache_dir())
        if not _port_free(port):
            raise CollectorError(f"lab server port {LOOPBACK}:{port} is already in use")

        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        conf, pidfile, log = (workdir / n for n in ("chronyd.conf", "chronyd.pid", "chronyd.log"))
        conf.write_text(
            "# timekit reference lab server (written by timekit.lab.chrony)\n"
            f"port {port}\n"
            f"bindaddress {LOOPBACK}\n"
            "cmdport 0\n"
            "bindcmdaddress /\n"
            f"local stratum {stratum}\n"
            f"allow {LOOPBACK}\n"
            f"pidfile {pidfile}\n"
            + extra_conf
        )
        _remove_stale_pidfile(pidfile, conf)
        user, flags = _run_as()
        env = _base_env()
        env["LD_PRELOAD"] = f"{libfaketime}:{shim}"
        env["FAKETIME"] = faketime_spec(offset_s, drift_ppm)
        anchor_file = workdir / "anchor"
        env["TIMEKIT_LAB_ANCHOR"] = str(anchor_file)  # shim.c writes (real, fake) at the first packet
        argv = [chronyd, "-4", "-x", "-d", "-u", user, *flags, "-f", str(conf)]
        failure = ""
        for _attempt in range(TRUTH_CHECK_ATTEMPTS):
            anchor_file.unlink(missing_ok=True)
            log.write_bytes(b"")
            proc = _spawn(argv, env, log, detach)
            server = cls(port, ServerTruth(offset_s, drift_ppm, 0), proc.pid, workdir, _proc=proc)
            try:
                server._wait_ready(stratum, ready_timeout_s, log)
                server.truth = _measured_truth(anchor_file, drift_ppm, server.address)
                if not check_truth:
                    return server
                failure = _truth_check(server)
            except BaseException:
                server.stop()
                raise
            if not failure:
                return server
            server.stop()  # a server off its own anchored line: start it again, then give up loudly
            _wait_port_free(port, 5.0)
        raise CollectorError(failure)

    def _wait_ready(self, stratum: int, timeout_s: float, log: Path) -> None:
        deadline = time.monotonic() + timeout_s
        for _ in range(10_000):  # bounded; the deadline ends it first
            if not self.alive():
                raise CollectorError(
                    f"chronyd for lab server {self.address} exited during start: {_log_tail(log)}"
                )
            reply = _ntp_probe(self.port, 0.2)
            if reply is not None and reply[0] != 3 and reply[1] == stratum:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        raise CollectorError(
            f"chronyd for lab server {self.address} did not answer within {timeout_s} s: "
            f"{_log_tail(log) or 'no log output'}"
        )

    def alive(self) -> bool:
        """True while the chronyd process runs."""
        return self._chronyd.alive()

    def stop(self) -> None:
        """Stop chronyd (SIGTERM, wait, SIGKILL fallback) and remove its pidfile; idempotent."""
        self._chronyd.stop()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lab state file); :meth:`from_dict` re-attaches to the process."""
        return {
            "port": self.port,
            "pid": self.pid,
            "workdir": str(self.workdir),
            "truth": self.truth.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChronyServer:
        """Re-attach to a (detached) server recorded with :meth:`to_dict`."""
        return cls(
            port=int(d["port"]),
            truth=ServerTruth.from_dict(d["truth"]),
            pid=int(d["pid"]),
            workdir=Path(d["workdir"]),
        )

    def __enter__(self) -> ChronyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove_stale_pidfile(pidfile: Path, conf: Path) -> None:
    """Delete a pidfile left by an earlier chronyd, unless that chronyd still runs."""
    try:
        pid = int(pidfile.read_text().strip() or "0")
    except (OSError, ValueError):
        pid = 0
    if pid > 0 and _Chronyd(pid, conf, pidfile, None).ours() and not _is_zombie(pid):
        raise CollectorError(f"a lab chronyd (pid {pid}) already runs with {conf}")
    with contextlib.suppress(OSError):
        pidfile.unlink()


# --------------------------------------------------------------------------- client


_SOURCESTATS_FIELDS = (
    ("name", str),
    ("n_samples", int),
    ("n_runs", int),
    ("span_s", float),
    ("frequency_ppm", float),
    ("freq_skew_ppm", float),
    ("offset_s", float),
    ("std_dev_s", float),
)

_TRACKING_FIELDS = (
    ("ref_id", str),
    ("ref_name", str),
    ("stratum", int),
    ("ref_time_ns", "ns"),
    ("system_time_s", float),
    ("last_offset_s", float),
    ("rms_offset_s", float),
    ("frequency_ppm", float),
    ("residual_freq_ppm", float),
    ("skew_ppm", float),
    ("root_delay_s", float),
    ("root_dispersion_s", float),
    ("update_interval_s", float),
    ("leap_status", str),
)


def _decimal_s_to_ns(text: str) -> int:
    """'1795672717.405739191' -> exact integer ns (no float rounding)."""
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    ns = int(whole or "0") * NS_PER_S + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _parse_csv(line: str, fields: tuple[tuple[str, Any], ...], what: str) -> dict[str, Any]:
    parts = line.strip().split(",")
    if len(parts) < len(fields):
        raise CollectorError(f"unexpected chronyc {what} output: {line.strip()[:200]!r}")
    out: dict[str, Any] = {}
    try:
        for (name, kind), raw in zip(fields, parts, strict=False):
            out[name] = _decimal_s_to_ns(raw) if kind == "ns" else kind(raw)
    except ValueError as e:
        raise CollectorError(f"unexpected chronyc {what} output: {line.strip()[:200]!r}") from e
    return out


class ChronyClient:
    """chronyd as an NTP *client* of one lab server: an independent reference measurement.

    It reads the real (unfaked) clock, polls ``127.0.0.1:server_port`` every
    2**poll s, never touches the system clock (``-x``), serves nothing (``port 0``,
    ``cmdport 0``) and answers ``chronyc`` on a Unix socket in a directory owned by
    the user chronyd runs as (``_chrony`` when root) with mode 700.
    """

    def __init__(
        self, server_port: int, workdir: Path, sock: Path, pid: int, proc: subprocess.Popen | None
    ) -> None:
        self.server_port = server_port
        self.workdir = Path(workdir)
        self.sock = sock
        self.pid = pid
        self._tmp_sockdir: Path | None = None
        self._chronyd = _Chronyd(pid, self.workdir / "chronyd.conf", self.workdir / "chronyd.pid", proc)

    @classmethod
    def start(
        cls,
        server_port: int,
        workdir: Path,
        poll: int = -2,
        ready_timeout_s: float = 10.0,
    ) -> ChronyClient:
        """Start chronyd with ``server 127.0.0.1 port N iburst minpoll P maxpoll P``;
        wait until its command socket answers. Raises CollectorError."""
        if not 1 <= server_port <= 65535:
            raise CollectorError(f"lab server port out of range: {server_port}")
        if not -6 <= poll <= 17:
            raise CollectorError(f"chrony poll must be -6..17 (log2 s), got {poll}")
        chronyd, chronyc = _which("chronyd"), _which("chronyc")
        if chronyd is None or chronyc is None:
            raise CollectorError("reference lab unavailable: chronyd/chronyc not found")
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        user, flags = _run_as()
        pw = pwd.getpwnam(user)
        sockdir, tmp_sockdir = workdir / "sock", False
        # chronyd opens the socket after dropping to `user`, chronyc puts its own beside it
        too_long = len(str(sockdir / "chronyc.4194304.sock")) > _SUN_PATH_MAX
        if too_long or not _traversable_by(workdir, pw):
            sockdir, tmp_sockdir = Path(tempfile.mkdtemp(prefix="timekit-chronyc-")), True
        sockdir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(sockdir, pw.pw_uid, pw.pw_gid)
        os.chmod(sockdir, 0o700)
        sock = sockdir / "chronyd.sock"
        conf, pidfile, log = (workdir / n for n in ("chronyd.conf", "chronyd.pid", "chronyd.log"))
        conf.write_text(
            "# timekit reference lab client (written by timekit.lab.chrony)\n"
            f"server {LOOPBACK} port {server_port} iburst minpoll {poll} maxpoll {poll}\n"
            "port 0\n"
            "cmdport 0\n"
            f"bindcmdaddress {sock}\n"
            f"pidfile {pidfile}\n"
        )
        _remove_stale_pidfile(pidfile, conf)
        argv = [chronyd, "-4", "-x", "-d", "-u", user, *flags, "-f", str(conf)]
        log.write_bytes(b"")
        proc = _spawn(argv, _base_env(), log, detach=False)
        client = cls(server_port, workdir, sock, proc.pid, proc)
        client._tmp_sockdir = sockdir if tmp_sockdir else None
        try:
            deadline = time.monotonic() + ready_timeout_s
            for _ in range(10_000):  # bounded; the deadline ends it first
                if not client.alive():
                    raise CollectorError(f"lab chronyd client exited during start: {_log_tail(log)}")
                if sock.exists() and client._chronyc("tracking", check=False) is not None:
                    return client
                if time.monotonic() >= deadline:
                    raise CollectorError(
                        f"lab chronyd client's command socket {sock} not ready within "
                        f"{ready_timeout_s} s: {_log_tail(log) or 'no log output'}"
                    )
                time.sleep(0.05)
            raise CollectorError("lab chronyd client never became ready")
        except BaseException:
            client.stop()
            raise

    def _chronyc(self, command: str, check: bool = True) -> str | None:
        chronyc = _which("chronyc")
        assert chronyc is not None
        try:
            res = subprocess.run(
                [chronyc, "-n", "-c", "-h", str(self.sock), command],
                capture_output=True,
                text=True,
                timeout=CHRONYC_TIMEOUT_S,
                env=_base_env(),
            )
        except subprocess.TimeoutExpired as e:
            if not check:
                return None
            raise CollectorError(f"chronyc {command} timed out after {CHRONYC_TIMEOUT_S} s") from e
        if res.returncode != 0:
            if not check:
                return None
            err = " ".join((res.stderr or res.stdout).split())[:200]
            raise CollectorError(f"chronyc {command} failed (exit {res.returncode}): {err}")
        return res.stdout

    def sourcestats(self) -> dict[str, Any]:
        """The lab server's row of ``chronyc -c sourcestats``, chrony's numbers unconverted.

        Keys: name, n_samples (NP), n_runs (NR), span_s, frequency_ppm,
        freq_skew_ppm, offset_s, std_dev_s.

        Signs (chrony's, measured): ``frequency_ppm`` is the residual frequency of
        the local clock against the source, negative = local slow (DESIGN's
        ``drift_ppm`` sign). ``offset_s`` is local minus source, positive = local
        ahead: the *opposite* of DESIGN's ``offset_s`` (a server 0.25 s ahead, with
        ``noselect``, shows -0.25). Both are relative to chronyd's corrected NTP
        clock, so once chronyd has synchronised to this source they are residuals
        near 0; the full offset/drift are in :meth:`tracking`.
        """
        out = self._chronyc("sourcestats")
        assert out is not None
        for line in out.splitlines():
            if line.startswith(LOOPBACK + ","):
                return _parse_csv(line, _SOURCESTATS_FIELDS, "sourcestats")
        raise CollectorError(f"chronyc sourcestats has no row for {LOOPBACK}: {out.strip()[:200]!r}")

    def tracking(self) -> dict[str, Any]:
        """``chronyc -c tracking`` parsed, chrony's numbers unconverted.

        Keys: ref_id, ref_name, stratum, ref_time_ns (int ns, Unix), system_time_s,
        last_offset_s, rms_offset_s, frequency_ppm, residual_freq_ppm, skew_ppm,
        root_delay_s, root_dispersion_s, update_interval_s, leap_status.

        Signs (chrony's, measured with ``-x`` against a +0.25 s / +100 ppm server):
        ``system_time_s`` = NTP time - system time, positive = local clock slow
        ("0.2508 seconds slow of NTP time" -> +0.2508; DESIGN's ``offset_s`` sign).
        ``frequency_ppm`` negative = local clock slow ("100.496 ppm slow" ->
        -100.496; DESIGN's ``drift_ppm`` sign). ``last_offset_s`` positive = local
        ahead (the opposite sign).
        """
        out = self._chronyc("tracking")
        assert out is not None
        line = out.strip().splitlines()[0] if out.strip() else ""
        return _parse_csv(line, _TRACKING_FIELDS, "tracking")

    def alive(self) -> bool:
        """True while the client chronyd runs."""
        return self._chronyd.alive()

    def stop(self) -> None:
        """Stop the client chronyd (and remove a temporary socket dir); idempotent."""
        self._chronyd.stop()
        if self._tmp_sockdir is not None:
            shutil.rmtree(self._tmp_sockdir, ignore_errors=True)
            self._tmp_sockdir = None

    def __enter__(self) -> ChronyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
