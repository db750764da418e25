"""Fault-injection NTP server: many loopback ports from one process, each with a behaviour.

chronyd will not send kiss-o'-death, forged origins, garbled packets or steps on
demand; this server does, with exactly known truth. A `good` port answers with
server time = realtime + offset + drift·(t − start) (+ step after `step_after_s`),
adds a symmetric path delay (`delay_s`, half before T2, half after T3, so the offset
is unaffected) and optional asymmetric spikes (outbound only: offset error = spike/2).

Run: `python -m timekit.lab.faultserver SPEC.json READY.json`. SPEC lists ports
(`port` 0 = pick a free one); READY is written atomically once every socket is bound,
with the real ports and `start_ns` (the CLOCK_REALTIME anchor of every drift).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import struct
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from timekit.collectors.clocks import realtime_ns
from timekit.collectors.ntp_packet import encode_reply, unix_ns_to_ts64
from timekit.units import NS_PER_S

# Behaviours that are not plain good replies; the README's fault table lists each.
FAULT_KINDS = (
    "good", "silent", "empty", "short", "len50", "tail68", "tail96", "tail120", "tail1024", "oversize",
    "bad_mode", "mode5",
    "bad_version", "bogus_origin", "origin_zero", "zero_transmit", "zero_receive", "unsync_li3",
    "stratum16", "kod_rate", "kod_deny", "kod_rstr", "kod_other", "kod_rate_bad_origin",
    "kod_rate_poll127", "bad_root_distance", "t3_before_t2", "reftime_future", "duplicate",
    "junk_then_good", "other_port", "refid_weird", "junk_flood",
)
JUNK_FLOOD_EVERY_S = 0.05  # junk_flood: a forged reply every 50 ms for 1 s, never a genuine one


@dataclass
class PortSpec:
    """One port's behaviour. Offsets s, drift ppm, delays s; probabilities in [0, 1]."""

    kind: str = "good"
    port: int = 0
    host: str = "127.0.0.1"
    offset_s: float = 0.0
    drift_ppm: float = 0.0
    delay_s: float = 0.0
    asymmetry_s: float = 0.0  # extra delay on the request leg only: the offset measured moves by half of it
    jitter_s: float = 0.0
    loss: float = 0.0
    spike_prob: float = 0.0
    spike_s: float = 0.0
    step_after_s: float | None = None
    step_s: float = 0.0
    step_until_s: float | None = None  # the step is undone at this elapsed time (an excursion)
    # a frequency change: from this elapsed time the drift is drift_ppm + drift_change_ppm (the phase
    # stays continuous: the offset bends, it does not jump)
    drift_change_after_s: float | None = None
    drift_change_ppm: float = 0.0
    # white phase noise of the server's clock: every reply's T2 and T3 are off the truth by one draw
    # of standard deviation noise_s from noise_dist ('gauss', 'uniform', 'laplace'); the truth is the
    # line without it (what a stability measurement must find: ADEV = sqrt(3)·noise_s/tau)
    noise_s: float = 0.0
    noise_dist: str = "gauss"
    # a glitch of the server's clock: with probability glitch_prob a reply's T2 and T3 are both glitch_s
    # off (one bad clock read: an offset spike the error bars do not cover, unlike spike_s)
    glitch_prob: float = 0.0
    glitch_s: float = 0.0
    # a leap second `leap_after_s` after start (place it at 23:59:60 by choosing offset_s): announced
    # (leap indicator 1) until then, and then 'step' (1 s back at once), 'smear' (1 s back at a constant
    # rate over leap_smear_s, Google's linear smear) or 'none' (announced, never applied)
    leap_after_s: float | None = None
    leap_mode: str = "step"
    leap_smear_s: float = 0.0
    stratum: int = 2
    # the reference id: "" is 127.0.0.1 (an upstream's address); up to 4 ASCII characters ("GPS") name
    # a primary's source, which a chronyd on 127.0.0.1 syncing to this port needs (its loop check
    # rejects a source whose reference is its own address)
    refid: str = ""
    root_delay_s: float = 0.0001
    root_dispersion_s: float = 0.0001
    seed: int = 0
    name: str = ""

    def server_offset_s(self, t_ns: int, start_ns: int) -> float:
        """True offset (server − real) at realtime `t_ns`, seconds."""
        elapsed_s = (t_ns - start_ns) / NS_PER_S
        return (self.offset_s + self.drift_ppm * 1e-6 * elapsed_s
                + frequency_change_at(elapsed_s, self.drift_change_after_s, self.drift_change_ppm)
                + step_at(elapsed_s, self.step_after_s, self.step_s, self.step_until_s)
                + leap_applied_at(elapsed_s, self.leap_after_s, self.leap_mode, self.leap_smear_s))

    def leap_indicator(self, t_ns: int, start_ns: int) -> int:
        """1 (a second will be inserted) until the leap, 0 after (and without one)."""
        if self.leap_after_s is None:
            return 0
        return 1 if (t_ns - start_ns) / NS_PER_S < self.leap_after_s else 0

    def noise_draw_s(self, rng: random.Random) -> float:
        """One draw of the server clock's white phase noise, s (standard deviation `noise_s`)."""
        if not self.noise_s:
            return 0.0
        if self.noise_dist == "uniform":
            return rng.uniform(-1.0, 1.0) * self.noise_s * 3 ** 0.5
        if self.noise_dist == "laplace":  # scale b = sigma / sqrt(2)
            return rng.choice((-1.0, 1.0)) * rng.expovariate(2 ** 0.5 / self.noise_s)
        return rng.gauss(0.0, self.noise_s)


NOISE_DISTRIBUTIONS = ("gauss", "uniform", "laplace")
LEAP_MODES = ("step", "smear", "none")


def leap_applied_at(elapsed_s: float, after_s: float | None, mode: str, smear_s: float) -> float:
    """How much of an inserted leap second the server's clock has taken back `elapsed_s` after start, s."""
    if after_s is None or elapsed_s < after_s or mode == "none":
        return 0.0
    if mode == "smear" and smear_s > 0:
        return -min(1.0, (elapsed_s - after_s) / smear_s)
    return -1.0


def frequency_change_at(elapsed_s: float, after_s: float | None, change_ppm: float) -> float:
    """The phase a frequency change of `change_ppm` from `after_s` has added by `elapsed_s`, seconds."""
    if after_s is None or elapsed_s <= after_s:
        return 0.0
    return change_ppm * 1e-6 * (elapsed_s - after_s)


def step_at(elapsed_s: float, after_s: float | None, step_s: float, until_s: float | None) -> float:
    """The step in force `elapsed_s` after start: `step_s` from `after_s` until `until_s`, seconds."""
    if after_s is None or elapsed_s < after_s or (until_s is not None and elapsed_s >= until_s):
        return 0.0
    return step_s


@dataclass
class _Port:
    spec: PortSpec
    transport: asyncio.DatagramTransport | None = None
    sock: socket.socket | None = None
    rng: random.Random = field(default_factory=random.Random)
    requests: int = 0


class FaultServer:
    """All ports of one process. `start_ns` anchors every port's drift."""

    def __init__(self, specs: list[PortSpec], start_ns: int | None = None) -> None:
        for s in specs:
            if s.kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {s.kind!r}")
            if s.leap_mode not in LEAP_MODES or s.leap_smear_s < 0:
                raise ValueError(f"leap mode {s.leap_mode!r} / smear {s.leap_smear_s} s: need one of "
                                 f"{LEAP_MODES}, smear >= 0 s")
            if s.noise_dist not in NOISE_DISTRIBUTIONS or not 0 <= s.noise_s < 1:
                raise ValueError(f"noise {s.noise_dist!r} {s.noise_s} s: need one of {NOISE_DISTRIBUTIONS}, "
                                 "0 <= noise_s < 1 s")
        self.ports = [_Port(s, rng=random.Random(s.seed or i + 1)) for i, s in enumerate(specs)]
        self.start_ns = realtime_ns() if start_ns is None else start_ns  # the lab's common anchor, if given
        self._side_sock: socket.socket | None = None

    def _server_ns(self, p: _Port, real_ns: int) -> int:
        return real_ns + round(p.spec.server_offset_s(real_ns, self.start_ns) * NS_PER_S)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for p in self.ports:
            family = socket.AF_INET6 if ":" in p.spec.host else socket.AF_INET
            p.sock = socket.socket(family, socket.SOCK_DGRAM)
            p.sock.bind((p.spec.host, p.spec.port))
            p.sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(partial(_Protocol, self, p), sock=p.sock)
            p.transport = transport
            p.spec.port = p.sock.getsockname()[1]
        self._side_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._side_sock.bind(("127.0.0.1", 0))

    def on_request(self, p: _Port, data: bytes, addr: Any) -> None:
        p.requests += 1
        s = p.spec
        if len(data) < 48 or s.kind == "silent" or (s.loss and p.rng.random() < s.loss):
            return
        if s.kind == "junk_flood":
            loop = asyncio.get_running_loop()
            junk = encode_reply(origin_ts=p.rng.getrandbits(64), receive_ts=1, transmit_ts=1)
            for k in range(int(1.0 / JUNK_FLOOD_EVERY_S)):
                loop.call_later(k * JUNK_FLOOD_EVERY_S, self._send, p, junk, addr)
            return
        origin = struct.unpack_from("!Q", data, 40)[0]
        version = (data[0] >> 3) & 7
        spike = s.spike_s if s.spike_prob and p.rng.random() < s.spike_prob else 0.0
        jitter = p.rng.uniform(0, s.jitter_s) if s.jitter_s else 0.0
        before_s = s.delay_s / 2 + s.asymmetry_s + spike + jitter / 2
        after_s = s.delay_s / 2 + jitter / 2
        loop = asyncio.get_running_loop()
        if before_s > 0:
            loop.call_later(before_s, self._reply, p, origin, version, addr, after_s)
        else:
            self._reply(p, origin, version, addr, after_s)

    def _reply(self, p: _Port, origin: int, version: int, addr: Any, after_s: float) -> None:
        noise_ns = round(p.spec.noise_draw_s(p.rng) * NS_PER_S)  # one reading error per reply
        if p.spec.glitch_prob and p.rng.random() < p.spec.glitch_prob:
            noise_ns += round(p.spec.glitch_s * NS_PER_S)
        t2 = self._server_ns(p, realtime_ns()) + noise_ns
        real3 = realtime_ns()
        t3 = self._server_ns(p, real3) + noise_ns
        packet = self._packet(p, origin, version, t2, t3, p.spec.leap_indicator(real3, self.start_ns))
        if after_s > 0:
            asyncio.get_running_loop().call_later(after_s, self._send, p, packet, addr)
        else:
            self._send(p, packet, addr)

    def _send(self, p: _Port, packet: bytes | list[bytes], addr: Any) -> None:
        if p.spec.kind == "other_port" and self._side_sock is not None:
            self._side_sock.sendto(packet if isinstance(packet, bytes) else packet[0], addr)
            return
        assert p.sock is not None  # the raw socket: asyncio drops empty datagrams, we must not
        for pkt in packet if isinstance(packet, list) else [packet]:
            try:
                p.sock.sendto(pkt, addr)
            except OSError:
                pass  # client gone: nothing to do

    def _packet(self, p: _Port, origin: int, version: int, t2: int, t3: int,
                leap: int = 0) -> bytes | list[bytes]:
        s, k = p.spec, p.spec.kind
        f: dict[str, Any] = dict(
            origin_ts=origin, receive_ts=unix_ns_to_ts64(t2), transmit_ts=unix_ns_to_ts64(t3),
            reference_ts=unix_ns_to_ts64(t3 - 16 * NS_PER_S), version=version, stratum=s.stratum,
            root_delay_s=s.root_delay_s, root_dispersion_s=s.root_dispersion_s,
            refid=s.refid.encode("ascii")[:4].ljust(4, b"\0") if s.refid else b"\x7f\x00\x00\x01",
            poll=4, leap=leap,
        )
        if k.startswith("kod_"):
            code = {"kod_rate": b"RATE", "kod_deny": b"DENY", "kod_rstr": b"RSTR",
                    "kod_other": b"XFOO", "kod_rate_bad_origin": b"RATE",
                    "kod_rate_poll127": b"RATE"}[k]
            f.update(stratum=0, leap=3, refid=code, reference_ts=0)
            if k == "kod_rate_bad_origin":
                f["origin_ts"] = origin ^ 0xFFFF
            if k == "kod_rate_poll127":
                f["poll"] = 127
        elif k in ("bad_mode", "mode5"):
            f["mode"] = 3 if k == "bad_mode" else 5
        elif k == "bad_version":
            f["version"] = 5
        elif k == "bogus_origin":
            f["origin_ts"] = origin ^ (1 << 40)
        elif k == "origin_zero":
            f["origin_ts"] = 0
        elif k == "zero_transmit":
            f["transmit_ts"] = 0
        elif k == "zero_receive":
            f["receive_ts"] = 0
        elif k == "unsync_li3":
            f["leap"] = 3
        elif k == "stratum16":
            f["stratum"] = 16
        elif k == "bad_root_distance":
            f["root_dispersion_s"] = 20.0
        elif k == "t3_before_t2":
            f["receive_ts"] = unix_ns_to_ts64(t3 + NS_PER_S)
        elif k == "reftime_future":
            f["reference_ts"] = unix_ns_to_ts64(t3 + 3600 * NS_PER_S)
        elif k == "refid_weird":
            f.update(stratum=1, refid=b"=cm\xff")
        pkt = encode_reply(**f)
        if k == "empty":
            return b""
        if k == "short":
            return pkt[:47]
        if k == "len50":
            return pkt + b"\0\0"
        if k.startswith("tail"):  # FAULTS N3: a MAC or extension fields after the header, ignored
            return pkt + bytes((0xA5 ^ i) & 0xFF for i in range(int(k[4:]) - len(pkt)))
        if k == "oversize":
            return pkt + b"\0" * (2000 - 48)
        if k == "duplicate":
            return [pkt, pkt]
        if k == "junk_then_good":
            return [encode_reply(**{**f, "origin_ts": origin ^ 1}), pkt]
        return pkt

    def ready_info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "start_ns": self.start_ns,
                "ports": [asdict(p.spec) for p in self.ports]}


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: FaultServer, port: _Port) -> None:
        self.server, self.port = server, port

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.on_request(self.port, data, addr)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same directory, fsync, rename into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


async def serve(specs: list[PortSpec], ready_path: Path, start_ns: int | None = None) -> None:
    server = FaultServer(specs, start_ns)
    await server.start()
    write_json_atomic(ready_path, server.ready_info())
    await until_stopped()


async def until_stopped() -> None:
    """Return once SIGTERM or SIGINT arrives (a lab process's way to end: cleanly, on `lab stop`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m timekit.lab.faultserver SPEC.json READY.json", file=sys.stderr)
        return 2
    doc = json.loads(Path(args[0]).read_text())
    specs = [PortSpec(**d) for d in doc["ports"]]
    import resource  # a fleet lab serves thousands of ports from this one process: one socket each

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(specs) + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    asyncio.run(serve(specs, Path(args[1]), doc.get("start_ns")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
