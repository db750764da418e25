"""The lab as a whole: start/stop/status of chronyd servers and the fault server, with truth.

A lab is a directory holding `lab.json`: every server's address, kind, pid and its
ground truth (offset at `start_ns`, drift, optional step), so any process (tests,
`timekit lab status`, benchmarks) can ask "what is this server's true offset now?".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timekit.address import NTS_SCHEME, format_hostport
from timekit.atomic_files import pid_alive
from timekit.errors import CollectorError, UsageError
from timekit.lab.faultserver import (
    FAULT_KINDS,
    PortSpec,
    frequency_change_at,
    leap_applied_at,
    step_at,
    write_json_atomic,
)
from timekit.lab_names import STATE_FILE, default_lab_dir
from timekit.units import NS_PER_S, PPM

if TYPE_CHECKING:
    from timekit.lab.chrony import ChronyServer

_CHILDREN: dict[int, Any] = {}  # our children (Popen or ChronyServer), reaped by Lab.stop
READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ChronySpec:
    """A chronyd server to run under libfaketime: offset s and rate error ppm, server vs true."""

    name: str
    offset_s: float
    server_drift_ppm: float


# The default lab: opposite drifts and offsets, big enough to see in seconds.
DEFAULT_CHRONY = (
    ChronySpec("chrony-ahead", 0.250, 100.0),
    ChronySpec("chrony-behind", -0.080, -200.0),
    ChronySpec("chrony-near", 0.002, 20.0),
)
DEFAULT_GOOD_FAULT_PORTS = (
    PortSpec(name="jittery", offset_s=0.030, drift_ppm=-50.0, jitter_s=0.002, spike_prob=0.1,
             spike_s=0.050),
    PortSpec(name="stepper", offset_s=0.050, step_after_s=30.0, step_s=0.200),
    PortSpec(name="falseticker", offset_s=2.5),
    PortSpec(name="lossy", offset_s=-0.010, loss=0.3),
)

NTS_SPEC = ChronySpec("chrony-nts", 0.015, 10.0)  # `lab start --nts`: authenticated, near the others

# The "majority" lab: what a healthy fleet looks like. Three chronyd servers and a jittery one agree
# (20 ms ahead of this host, 30 ppm slow), one liar is 2.5 s off: the majority is found, the liar
# caught, and `timekit now` answers with an interval that contains the group's truth. A few faults
# (rate-limiting KoD, a spoofed origin, a silent server) show that they are rejected, not believed.
MAJORITY_OFFSET_S, MAJORITY_DRIFT_PPM = 0.020, -30.0
MAJORITY_CHRONY = tuple(ChronySpec(f"honest-{x}", MAJORITY_OFFSET_S, MAJORITY_DRIFT_PPM) for x in "abc")
MAJORITY_GOOD_PORTS = (
    PortSpec(name="jittery", offset_s=MAJORITY_OFFSET_S, drift_ppm=MAJORITY_DRIFT_PPM, jitter_s=0.001,
             spike_prob=0.1, spike_s=0.020),
    PortSpec(name="liar", offset_s=2.5),
)
SCENARIOS: dict[str, tuple[tuple[ChronySpec, ...], tuple[PortSpec, ...], tuple[str, ...] | None]] = {
    "default": (DEFAULT_CHRONY, DEFAULT_GOOD_FAULT_PORTS, None),
    "majority": (MAJORITY_CHRONY, MAJORITY_GOOD_PORTS, ("kod_rate", "bogus_origin", "silent")),
}


@dataclass
class LabServer:
    """One lab server and its truth. Offsets s (server − true), instants ns.

    `server_drift_ppm` is the *server's* rate error (+100: it gains 100 µs/s), so the
    offset reference − local grows at +server_drift_ppm and a local `drift_ppm` estimated
    against this server (DESIGN.md sign: local gains = positive) is −server_drift_ppm.
    """

    name: str
    address: str
    kind: str  # 'chrony' or a fault kind ('good', 'kod_rate', ...)
    pid: int
    offset_s: float = 0.0
    server_drift_ppm: float = 0.0
    start_ns: int = 0
    step_after_s: float | None = None
    step_s: float = 0.0
    step_until_s: float | None = None
    drift_change_after_s: float | None = None  # from then the server drifts drift_change_ppm more
    drift_change_ppm: float = 0.0
    leap_after_s: float | None = None  # a leap second then: 'step', 'smear' over leap_smear_s, or 'none'
    leap_mode: str = "step"
    leap_smear_s: float = 0.0

    def true_offset_at(self, t_ns: int) -> float:
        """True offset of this server against the local clock at realtime `t_ns`, seconds."""
        elapsed_s = (t_ns - self.start_ns) / NS_PER_S
        step = step_at(elapsed_s, self.step_after_s, self.step_s, self.step_until_s)
        return (self.offset_s + self.server_drift_ppm * PPM * elapsed_s + step
                + frequency_change_at(elapsed_s, self.drift_change_after_s, self.drift_change_ppm)
                + leap_applied_at(elapsed_s, self.leap_after_s, self.leap_mode, self.leap_smear_s))

    @property
    def answers_truthfully(self) -> bool:
        """True for servers whose good replies carry their configured truth."""
        return self.kind in ("chrony", "good", "duplicate", "junk_then_good") or self.kind.startswith("tail")


@dataclass
class Lab:
    """A running (or described) lab rooted at `directory`."""

    directory: Path
    servers: list[LabServer] = field(default_factory=list)
    extra_pids: list[int] = field(default_factory=list)

    def server(self, name: str) -> LabServer:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def by_address(self) -> dict[str, LabServer]:
        return {s.address: s for s in self.servers}

    def save(self) -> None:
        write_json_atomic(self.directory / STATE_FILE, {
            "servers": [asdict(s) for s in self.servers], "extra_pids": self.extra_pids})

    @classmethod
    def load(cls, directory: Path) -> Lab:
        path = directory / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"no lab running in {directory} (start one: timekit lab start)") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"lab state {path} is unreadable: {exc}") from None
        return cls(directory, [LabServer(**s) for s in raw["servers"]], raw.get("extra_pids", []))

    def pids(self) -> list[int]:
        """Pids recorded for this lab that still belong to it (never a recycled pid)."""
        recorded = {s.pid for s in self.servers} | set(self.extra_pids)
        return sorted(p for p in recorded if is_lab_process(p, self.directory))

    def stop(self) -> None:
        """Terminate every lab process (SIGTERM, then SIGKILL after 3 s) and drop the state."""
        pids = self.pids()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            if pid_alive(pid):
                _signal(pid, signal.SIGKILL)
        for pid in pids:
            reap(pid)
        (self.directory / STATE_FILE).unlink(missing_ok=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(pid: int) -> None:
    """Wait for a child we started (no zombie, no ResourceWarning); no-op for others."""
    proc = _CHILDREN.pop(pid, None)
    if proc is not None and not isinstance(proc, subprocess.Popen):
        proc.stop()  # a ChronyServer: stops, waits, removes its pidfile
    elif proc is not None:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def is_lab_process(pid: int, directory: Path) -> bool:
    """True if `pid` runs a lab program (chronyd / the fault server) with files in `directory`."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = b" ".join(args).decode(errors="replace")
    return ("chronyd" in text or "timekit.lab.faultserver" in text) and str(directory) in text


def private_dir(directory: Path) -> None:
    """Create `directory` 0700, or accept it only when it is a real directory (not a symlink) owned
    by this user and writable by no one else (ssh's rule for ~/.ssh): the lab writes chronyd's
    config and pid files there, as root too, so a directory someone else made first (in /tmp,
    say) could aim those writes through planted symlinks. UsageError in one line otherwise."""
    try:
        if not directory.parent.is_dir():
            directory.parent.mkdir(parents=True)
        directory.mkdir(mode=0o700)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise UsageError(f"cannot create lab directory {directory}: {exc.strerror}") from None
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise UsageError(f"cannot create lab directory {directory}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"lab directory {directory} is not a directory (a symlink or a file): refusing it")
    if st.st_uid != os.geteuid():
        raise UsageError(f"lab directory {directory} belongs to uid {st.st_uid}, not to you: refusing it "
                         "(remove it, or choose another with --dir / $TIMEKIT_LAB_DIR)")
    if st.st_mode & 0o022:
        raise UsageError(f"lab directory {directory} is writable by others (mode {st.st_mode & 0o7777:04o}): "
                         "refusing it (chmod go-w, or choose another with --dir)")


def start_fault_server(directory: Path, specs: list[PortSpec], detach: bool = True,
                       name: str = "faults", start_ns: int | None = None) -> tuple[int, dict[str, Any]]:
    """Start the fault-injection server process; return (pid, its ready info with real ports).
    `start_ns`: the CLOCK_REALTIME instant every port's offset is given at (default: its start)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path, ready_path = directory / f"{name}.spec.json", directory / f"{name}.ready.json"
    ready_path.unlink(missing_ok=True)
    doc: dict[str, Any] = {"ports": [asdict(s) for s in specs]}
    if start_ns is not None:
        doc["start_ns"] = start_ns
    write_json_atomic(spec_path, doc)
    log = open(directory / f"{name}.log", "ab")
    # -P: not the current directory first on sys.path (a checkout's timekit/ would shadow the
    # installed package the parent runs, which has timekit.collectors mapped in)
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "timekit.lab.faultserver", str(spec_path), str(ready_path)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=detach)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready_path.exists():
            _CHILDREN[proc.pid] = proc
            return proc.pid, json.loads(ready_path.read_text())
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait(5)
    tail = (directory / f"{name}.log").read_text(errors="replace")[-400:]
    raise CollectorError(f"fault server did not start: {tail.strip() or 'no output'}")


def start_lab(directory: Path | None = None, *, chrony: tuple[ChronySpec, ...] | None = DEFAULT_CHRONY,
              good_ports: tuple[PortSpec, ...] = DEFAULT_GOOD_FAULT_PORTS,
              fault_kinds: tuple[str, ...] | None = None, detach: bool = True,
              nts: ChronySpec | None = None) -> Lab:
    """Start chronyd servers and the fault server; write lab.json; return the Lab.

    `nts`: also a chronyd serving NTS-KE (named `nts://127.0.0.1:KE_PORT` in the lab), its certificate
    (for localhost and 127.0.0.1) signed by a CA made now, in `nts-ca/ca.pem` under the lab directory:
    the trust anchor to give clients (`--nts-ca`).

    `fault_kinds` defaults to every kind in FAULT_KINDS except `good`, one port each.
    On any failure, whatever was started is stopped again (no stray processes).

    Every offset is given at one instant, the lab's start: servers started a second apart with the
    same offset and drift then keep the same time, as honest servers tracking UTC do (anchored at
    their own starts, a group at -30 ppm disagreed by 40 µs, which a 15 µs interval cannot hold).
    """
    directory = (directory or default_lab_dir()).absolute()
    private_dir(directory)
    if (directory / STATE_FILE).exists():
        old = Lab.load(directory)
        if any(pid_alive(p) for p in old.pids()):  # a stale lab.json (after a reboot) is ignored
            raise UsageError(f"a lab is already running in {directory} (timekit lab stop)")
    lab = Lab(directory)
    t0_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)  # every offset is given at this instant
    try:
        if chrony:
            from timekit.lab.chrony import lab_prerequisites

            missing = lab_prerequisites()
            if missing:
                raise CollectorError("cannot start chronyd servers: " + "; ".join(missing))
            for spec in chrony:
                srv = _start_chronyd(directory, spec, t0_ns, detach)
                _add_chronyd(lab, spec, srv, format_hostport("127.0.0.1", srv.port))
        if nts is not None:
            _start_nts(lab, directory, nts, t0_ns, detach)
        kinds = [k for k in FAULT_KINDS if k != "good"] if fault_kinds is None else list(fault_kinds)
        specs = [PortSpec(**{**asdict(p), "kind": "good"}) for p in good_ports]
        specs += [PortSpec(kind=k, name=k) for k in kinds]
        if specs:
            pid, ready = start_fault_server(directory, specs, detach=detach, start_ns=t0_ns)
            for p in ready["ports"]:
                lab.servers.append(LabServer(
                    p["name"] or p["kind"], format_hostport(p["host"], p["port"]), p["kind"], pid,
                    offset_s=p["offset_s"], server_drift_ppm=p["drift_ppm"], start_ns=ready["start_ns"],
                    step_after_s=p["step_after_s"], step_s=p["step_s"], step_until_s=p.get("step_until_s"),
                    drift_change_after_s=p.get("drift_change_after_s"),
                    drift_change_ppm=p.get("drift_change_ppm", 0.0), leap_after_s=p.get("leap_after_s"),
                    leap_mode=p.get("leap_mode", "step"), leap_smear_s=p.get("leap_smear_s", 0.0)))
        lab.save()
    except BaseException:
        lab.stop()
        raise
    return lab


NTS_CA_FILE = Path("nts-ca") / "ca.pem"


def _start_chronyd(directory: Path, spec: ChronySpec, t0_ns: int, detach: bool,
                   extra_conf: str = "") -> ChronyServer:
    """A lab chronyd on a free port, its offset on the spec's line through the lab's start `t0_ns`
    (libfaketime anchors at exec: the offset then)."""
    from timekit.lab.chrony import ChronyServer

    since_t0_s = (time.clock_gettime_ns(time.CLOCK_REALTIME) - t0_ns) / NS_PER_S
    srv = ChronyServer.start(free_port(), spec.offset_s + spec.server_drift_ppm * PPM * since_t0_s,
                             spec.server_drift_ppm, directory / spec.name, detach=detach,
                             extra_conf=extra_conf)
    _CHILDREN[srv.pid] = srv
    return srv


def _add_chronyd(lab: Lab, spec: ChronySpec, srv: ChronyServer, address: str) -> None:
    lab.servers.append(LabServer(spec.name, address, "chrony", srv.pid, offset_s=srv.truth.offset_s,
                                 server_drift_ppm=srv.truth.drift_ppm, start_ns=srv.truth.start_ns))
    lab.save()


def _start_nts(lab: Lab, directory: Path, spec: ChronySpec, t0_ns: int, detach: bool) -> None:
    """The lab's NTS server: a CA, a certificate for localhost and 127.0.0.1, chronyd serving NTS-KE."""
    from timekit.lab.nts_lab import issue, make_ca, nts_conf

    ca = make_ca(directory / NTS_CA_FILE.parent)
    cert, key = issue(ca, directory / spec.name / "cert", ("localhost", "127.0.0.1"))
    ke_port = free_port(socket.SOCK_STREAM)
    srv = _start_chronyd(directory, spec, t0_ns, detach,
                         extra_conf=nts_conf(cert, key, ke_port, directory / spec.name / "ntsdump"))
    _add_chronyd(lab, spec, srv, NTS_SCHEME + format_hostport("127.0.0.1", ke_port))


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A free loopback port for UDP (`SOCK_DGRAM`, NTP) or TCP (`SOCK_STREAM`, NTS-KE)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

