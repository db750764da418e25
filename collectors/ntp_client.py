"""Concurrent NTP client: one asyncio task per server, validated exchanges, kernel timestamps.

Each attempt uses a fresh connected UDP socket with an ephemeral port (RFC 9109), so
the kernel drops datagrams from any other address or port and reports ICMP
port-unreachable as ConnectionRefusedError. Both instants of ours are the kernel's, as
chrony takes them: T1 is the software transmit stamp (SO_TIMESTAMPING, read back from the
socket's error queue) and T4 the receive stamp (SO_TIMESTAMPNS), so neither Python's send
path (~30 µs here) nor its scheduling latency inflates the measured delay or skews the
offset; `tx_latency_ns`/`rx_latency_ns` record how far the user-space reads were from them,
and `tx_timestamp`/`rx_timestamp` say `user` where the kernel gave no stamp. Timeouts follow
each server's measured RTTs (RFC 6298).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from timekit.address import ServerAddress, format_hostport
from timekit.collectors.clocks import boot_id, read_bracketed, read_mono_raw
from timekit.collectors.clocks import realtime_ns as _realtime_ns  # module-level: tests inject steps
from timekit.collectors.ntp_packet import (
    NON_FINAL_ERRORS,
    NtpHeader,
    build_request,
    new_nonce,
    validate_reply,
)
from timekit.collectors.nts import (
    UID_LEN,
    NtsError,
    NtsSession,
    key_exchange,
    nts_request,
    trust_of,
    verify_nts_reply,
)
from timekit.collectors.rto import RtoEstimator
from timekit.collectors.server_policy import ServerState
from timekit.samples import NtpSample
from timekit.units import NS_PER_S
from timekit.vocabulary import ErrorCode

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux asm-generic value
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)  # and SCM_TIMESTAMPING, the same number
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
# software transmit stamps, reported without the packet (linux/net_tstamp.h)
SOF_TIMESTAMPING_TX_SOFTWARE, SOF_TIMESTAMPING_SOFTWARE, SOF_TIMESTAMPING_OPT_TSONLY = 1 << 1, 1 << 4, 1 << 11
TX_STAMP_FLAGS = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY
RECV_BUF = 1280  # > any NTP packet with extension fields we accept; bigger -> MSG_TRUNC
# room for every control message a datagram or a transmit stamp carries: a timespec, the three of
# scm_timestamping, and an extended error
CMSG_BUF = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(48) + socket.CMSG_SPACE(64)
BURST_COUNT = 4  # chrony iburst: a short burst for a new server...
BURST_SPACING_S = 2.0  # ...2 s apart...
POLL_SPACING_S = 64.0  # ...then no faster than 64 s for a public server
LOCAL_BURST_SPACING_S = 0.1  # loopback / lab servers are polled fast
LOCAL_POLL_SPACING_S = 1.0
DNS_TIMEOUT_S = 5.0
MAX_IN_FLIGHT = 256
T = TypeVar("T")
STEP_TOLERANCE_NS = 1_000_000  # realtime vs monotonic disagreement over one exchange

_TIMESPEC = struct.Struct("@qq")
TX_STAMP_SLACK_NS = 1_000_000  # a kernel transmit stamp this far outside the send's bracket is not ours


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """How many attempts per server, how far apart, and the timeout cap (seconds)."""

    count: int = BURST_COUNT
    interval_s: float | None = None  # None: chrony-like default spacing
    timeout_s: float = 2.0
    nts_ca: str | None = None  # NTS-KE trust anchors (a PEM file); None: the system's store / SSL_CERT_FILE

    def spacing_s(self, attempt: int, server: ServerAddress) -> float:
        """Seconds between the start of attempt `attempt` and the next one."""
        if self.interval_s is not None:
            return self.interval_s
        burst, poll = ((LOCAL_BURST_SPACING_S, LOCAL_POLL_SPACING_S) if server.is_loopback
                       else (BURST_SPACING_S, POLL_SPACING_S))
        return burst if attempt + 1 < BURST_COUNT else poll


@dataclass(slots=True)
class _Attempt:
    """Mutable scratch for one exchange."""

    nonce: int
    t1_ns: int = 0
    mono_before_t1_ns: int = 0  # CLOCK_MONOTONIC just before T1 was read ...
    mono_after_send_ns: int = 0  # ... and just after the request left: T1's instant lies between
    tx_stamps: bool = False  # the kernel was asked for a transmit stamp
    kernel_t1_ns: int | None = None  # the kernel's software transmit stamp, once read
    rejected: list[tuple[ErrorCode, str]] = field(default_factory=list)

    def t1_for_sample(self) -> tuple[int, str, int | None]:
        """(T1, where it came from, kernel minus user ns): the kernel's stamp when it lies where the
        send happened (between the user-space read and the send's return, with 1 ms of slack)."""
        k = self.kernel_t1_ns
        if k is not None:
            span = self.mono_after_send_ns - self.mono_before_t1_ns
            if -TX_STAMP_SLACK_NS <= k - self.t1_ns <= span + TX_STAMP_SLACK_NS:
                return k, "kernel", k - self.t1_ns
        return self.t1_ns, "user", None



def _clock_ns(clock_id: int) -> int:
    """clock_gettime_ns, CLOCK_REALTIME through `_realtime_ns` (where the tests inject steps)."""
    return _realtime_ns() if clock_id == time.CLOCK_REALTIME else time.clock_gettime_ns(clock_id)

def _drain_tx_stamps(sock: socket.socket) -> int | None:
    """Empty the socket's error queue (a pending entry keeps epoll reporting EPOLLERR); the newest
    software transmit stamp in it, ns, or None."""
    stamp = None
    for _ in range(8):  # one request per socket: one stamp, bounded all the same
        try:
            _, anc, _, _ = sock.recvmsg(1, CMSG_BUF, MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(data)  # [0] of three: the software stamp
                if sec or nsec:
                    stamp = sec * NS_PER_S + nsec
    return stamp


def _kernel_rx_ns(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * NS_PER_S + nsec
    return None


def _wall_step_ns(wall_span_ns: int, mono_min_ns: int, mono_max_ns: int) -> int:
    """The wall-clock step during an exchange, ns (realtime span minus the middle of the monotonic
    span's bracket [`mono_min_ns`, `mono_max_ns`]); 0 while the realtime span lies inside the bracket
    widened by `STEP_TOLERANCE_NS` and a 1000 ppm slew allowance: no step can be told from the reads."""
    slack = STEP_TOLERANCE_NS + mono_max_ns // 1000
    if mono_min_ns - slack <= wall_span_ns <= mono_max_ns + slack:
        return 0
    return wall_span_ns - (mono_min_ns + mono_max_ns) // 2


def _settle(done: asyncio.Future[NtpSample | None]) -> None:
    """Resolve the exchange's future with no reply (the deadline passed), unless a reply settled it."""
    if not done.done():
        done.set_result(None)


def _fail(server: ServerAddress, code: ErrorCode, detail: str, address: str | None = None,
          timeout_s: float | None = None) -> NtpSample:
    return NtpSample(server=server.name, ok=False, error=code, t_local_ns=_realtime_ns(),
                     address=address, timeout_s=timeout_s, detail=detail)


def _sample_from(server: ServerAddress, address: str, h: NtpHeader | None, **kw: object) -> NtpSample:
    hdr: dict[str, object] = {}
    if h is not None:
        hdr = dict(stratum=h.stratum, leap=h.leap, root_delay_s=h.root_delay_s,
                   root_dispersion_s=h.root_dispersion_s, refid=h.refid_text,
                   version=h.version, poll=h.poll, precision=h.precision)
    return NtpSample(server=server.name, address=address, **hdr, **kw)  # type: ignore[arg-type]


async def resolve(server: ServerAddress, timeout_s: float = DNS_TIMEOUT_S) -> list[tuple[int, tuple]]:
    """(family, sockaddr) pairs in resolver order; raise OSError (gaierror) or TimeoutError.

    IP literals skip the resolver, and so do names under `.invalid`, which never exist (RFC 6761
    §6.4: resolvers answer them as unknown without asking DNS, so the answer does not depend on
    whether this host has a working resolver). Names are resolved in a daemon thread, so a hung
    resolver costs at most `timeout_s` and never delays exit (asyncio's default executor
    would be joined at the end of asyncio.run).
    """
    try:
        ip = ipaddress.ip_address(server.host.split("%")[0])
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return [(socket.AF_INET6, (server.host, server.port, 0, 0))]
        return [(socket.AF_INET, (server.host, server.port))]
    name = server.host.lower().rstrip(".")
    if name == "invalid" or name.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    def lookup() -> list:
        return socket.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)

    infos = await in_daemon_thread(lookup, f"dns-{server.host}", timeout_s)
    seen: set[tuple[int, tuple]] = set()
    out: list[tuple[int, tuple]] = []
    for family, _t, _p, _c, sockaddr in infos:
        if (family, sockaddr) not in seen:
            seen.add((family, sockaddr))
            out.append((family, sockaddr))
    return out


async def query_once(server: ServerAddress, family: int, sockaddr: tuple,
                     timeout_s: float, nts: NtsSession | None = None) -> NtpSample:
    """One validated request/reply exchange with an absolute deadline of `timeout_s`. With an NTS
    session the request carries a fresh unique identifier, one of its cookies and an authenticator,
    and a reply is believed only once those verify (`collectors.nts`), before any other check."""
    loop = asyncio.get_running_loop()
    address = format_hostport(sockaddr[0], sockaddr[1])
    att = _Attempt(nonce=new_nonce())
    uid = os.urandom(UID_LEN) if nts is not None else b""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no kernel timestamps on this platform: user-space T4
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_STAMP_FLAGS)
            att.tx_stamps = True
        except OSError:
            pass  # no transmit stamps: user-space T1
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            return _fail(server, "network", f"connect: {exc.strerror or exc}", address, timeout_s)
        done: asyncio.Future[NtpSample | None] = loop.create_future()  # None: deadline passed
        request = build_request(att.nonce)
        if nts is not None:
            try:
                request = nts_request(request, nts, uid)  # takes one cookie: never sent twice
            except NtsError as exc:
                return _fail(server, exc.code, exc.detail, address, timeout_s)

        def on_readable() -> None:
            if att.tx_stamps:  # a transmit stamp that came late wakes us with EPOLLERR: take it
                att.kernel_t1_ns = _drain_tx_stamps(sock) or att.kernel_t1_ns
            while not done.done():
                try:
                    data, anc, flags, _ = sock.recvmsg(RECV_BUF, CMSG_BUF)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    done.set_result(_fail(server, "network", exc.strerror or str(exc),
                                          address, timeout_s))
                    return
                mono_before_rx_ns = time.monotonic_ns()
                # realtime and boottime as one pair (a preemption between two plain reads would read
                # as a wall-clock step), monotonic and raw as another (it would read as a kernel slew)
                paired = read_bracketed(time.CLOCK_BOOTTIME, tries=3, get=_clock_ns)
                user_rx_ns, boot_rx_ns = paired.realtime_ns, paired.clock_ns
                mono_after_rx_ns = time.monotonic_ns()
                mono_rx_ns, raw_rx_ns = read_mono_raw()
                kernel_rx_ns = _kernel_rx_ns(anc)
                t4_ns = kernel_rx_ns if kernel_rx_ns is not None else user_rx_ns
                # Wall-clock step during the exchange: the realtime span is outside what monotonic
                # allows between the two reads. Each read is bracketed by monotonic ones, so a thread
                # preempted next to a read (a busy host) widens the bracket instead of faking a step.
                stepped_ns = _wall_step_ns(user_rx_ns - att.t1_ns, mono_before_rx_ns - att.mono_after_send_ns,
                                           mono_after_rx_ns - att.mono_before_t1_ns)
                if stepped_ns:
                    done.set_result(_fail(
                        server, "clock_stepped",
                        f"local clock stepped {stepped_ns / NS_PER_S:+.6f} s mid-exchange",
                        address, timeout_s))
                    return
                t1_ns, t1_from, tx_latency_ns = att.t1_for_sample()
                if nts is not None and not flags & socket.MSG_TRUNC:
                    # authenticity first: nothing else of an unverified reply is believed
                    try:
                        nts.add_cookies(verify_nts_reply(data, nts, uid))
                    except NtsError as exc:
                        # forged, not ours, or a NAK (unauthenticated: anyone who saw the request can
                        # send one), so keep waiting for an authentic reply; a NAK re-keys only if
                        # none comes (RFC 8915 §5.7)
                        att.rejected.append((exc.code, exc.detail))
                        continue
                v = validate_reply(data, nonce=att.nonce, t1_ns=t1_ns, t4_ns=t4_ns,
                                   truncated=bool(flags & socket.MSG_TRUNC))
                if not v.final:
                    att.rejected.append((v.error or "malformed", v.detail))  # not final: always has a code
                    continue
                done.set_result(_sample_from(
                    server, address, v.header, ok=v.ok, error=v.error, t_local_ns=t4_ns,
                    offset_s=v.offset_s, delay_s=v.delay_s, t1_ns=t1_ns, t2_ns=v.t2_ns,
                    t3_ns=v.t3_ns, t4_ns=t4_ns, tx_timestamp=t1_from, tx_latency_ns=tx_latency_ns,
                    rx_timestamp="kernel" if kernel_rx_ns is not None else "user",
                    rx_latency_ns=user_rx_ns - t4_ns, timeout_s=timeout_s,
                    detail=v.detail or None,
                    # boottime at T4: the user-space pair (realtime, boottime) moved back to T4; the
                    # same for monotonic and raw (the kernel's slews since: monotonic - raw)
                    boottime_ns=boot_rx_ns - (user_rx_ns - t4_ns), boot_id=boot_id(),
                    monotonic_ns=mono_rx_ns - (user_rx_ns - t4_ns),
                    raw_ns=raw_rx_ns - (user_rx_ns - t4_ns), authenticated=nts is not None))

        loop.add_reader(sock.fileno(), on_readable)
        try:
            att.mono_before_t1_ns = time.monotonic_ns()
            att.t1_ns = _realtime_ns()
            try:
                sock.send(request)
            except OSError as exc:
                return _fail(server, "network", f"send: {exc.strerror or exc}", address, timeout_s)
            att.mono_after_send_ns = time.monotonic_ns()
            if att.tx_stamps:  # on loopback and most drivers the stamp is queued before send returns
                att.kernel_t1_ns = _drain_tx_stamps(sock)
            timer = loop.call_later(timeout_s, _settle, done)
            try:
                result = await done
            finally:
                timer.cancel()
            if result is not None:
                return result
            if att.rejected:  # only junk arrived: report what it was, not a bare timeout
                code, detail = att.rejected[-1]
                return _fail(server, code, f"{detail}; {len(att.rejected)} bad datagram(s), "
                             "no valid reply before the deadline", address, timeout_s)
            return _fail(server, "timeout", f"no reply within {timeout_s:.3f} s", address, timeout_s)
        finally:
            loop.remove_reader(sock.fileno())
            if not done.done():
                done.cancel()


Emit = Callable[[NtpSample, ServerState], None]  # called once per attempt, state already updated


async def sample_server(server: ServerAddress, plan: QueryPlan, state: ServerState,
                        emit: Emit, limiter: asyncio.Semaphore) -> None:
    """All attempts for one server, spaced per the plan; every attempt is emitted."""
    loop = asyncio.get_running_loop()
    rto = RtoEstimator(plan.timeout_s, state.srtt_s, state.rttvar_s, state.rto_s)
    addrs: list[tuple[int, tuple]] | None = None
    trust = trust_of(plan.nts_ca) if server.nts else ""  # read once: the CA file is hashed
    for attempt in range(plan.count):
        started = loop.time()
        held = state.held(_realtime_ns())
        if held is not None:
            emit(_fail(server, held, f"held back by our own {state.hold_reason} backoff"), state)
        else:
            if server.nts and not _session_usable(state.nts, trust):
                try:  # keys and cookies first: an NTS server is never asked in the clear
                    state.nts = await key_exchange_async(server, plan)
                except NtsError as exc:
                    emit(_fail(server, exc.code, exc.detail), state)
                    return
                except (OSError, TimeoutError) as exc:
                    code: ErrorCode = "timeout" if isinstance(exc, TimeoutError) else "network"
                    emit(_fail(server, code, f"NTS-KE with {server.host}:{server.port}: "
                               f"{getattr(exc, 'strerror', None) or exc or 'timed out'}"), state)
                    return
                except Exception as exc:  # noqa: BLE001 - one server's failure, never the whole run's
                    emit(_fail(server, "nts_tls", f"NTS-KE with {server.host}:{server.port} failed: "
                               f"{type(exc).__name__}: {exc}"), state)
                    return
                addrs = None  # NTP goes where the key exchange said
            if addrs is None:
                target = (ServerAddress(state.nts.ntp_host, state.nts.ntp_port) if server.nts and state.nts
                          else server)
                try:
                    addrs = await resolve(target)
                except socket.gaierror as exc:
                    if server.nts:  # the name is the key exchange's answer, not the user's input
                        emit(_fail(server, "nts_ke_error", f"NTS-KE named NTP server {target.host}, which "
                                   f"does not resolve ({exc.strerror or exc})"), state)
                        return
                    emit(_fail(server, "network", _dns_detail(server, exc)), state)
                    return
                except (OSError, TimeoutError) as exc:
                    emit(_fail(server, "network", f"DNS lookup of {server.host} failed: "
                               f"{getattr(exc, 'strerror', None) or 'timed out'}"), state)
                    return
            sample = await _query_any(server, addrs, rto, limiter, state.nts if server.nts else None)
            if sample.error == "nts_nak":
                state.nts = None  # the keys are no good any more: the next attempt keys again
            state.last_query_ns = sample.t_local_ns
            if sample.ok and sample.t1_ns is not None and sample.t4_ns is not None:
                rto.observe((sample.t4_ns - sample.t1_ns) / NS_PER_S)
                state.kod_backoff_s /= 2  # a good exchange lets an old KoD backoff decay
            elif sample.error == "timeout" or sample.error in NON_FINAL_ERRORS:
                rto.backoff()  # lost, or only junk before the deadline: both cost a full wait
            if sample.error in ("kod_rate", "kod_deny", "kod_rstr"):
                state.on_kod(sample.error, sample.poll or 0, sample.t_local_ns)
            state.srtt_s, state.rttvar_s, state.rto_s = rto.srtt_s, rto.rttvar_s, rto.rto_s
            emit(sample, state)
        if attempt + 1 < plan.count:
            pause_s = started + plan.spacing_s(attempt, server) - loop.time()
            if pause_s > 0:
                await asyncio.sleep(pause_s)


KE_MIN_TIMEOUT_S = 5.0  # a TLS handshake across the internet takes a few round trips
# keys and cookies kept across runs are used for a day at most, then the server is keyed again: its
# certificate (and the trust placed in it) is checked at least that often, not once for ever
NTS_SESSION_MAX_AGE_S = 86_400.0


def _session_usable(session: NtsSession | None, trust: str) -> bool:
    """A kept session is used while it has a cookie, was made under the trust anchors asked for now
    (`trust`), and is less than NTS_SESSION_MAX_AGE_S old (from the future after a step back: not)."""
    if session is None or not session.cookies or session.trust != trust:
        return False
    return 0 <= _realtime_ns() - session.ke_ns <= NTS_SESSION_MAX_AGE_S * NS_PER_S


async def in_daemon_thread(fn: Callable[[], T], name: str, timeout_s: float) -> T:
    """`fn()` in a daemon thread, awaited at most `timeout_s` (TimeoutError), its exception raised here:
    a blocking call (the resolver, pyOpenSSL) that hangs costs at most the timeout and never delays
    exit (asyncio's default executor would be joined at the end of asyncio.run)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if not fut.done():
            fut.set_exception(exc) if exc is not None else fut.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        failure: BaseException | None = None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task as it is
            failure = exc
        with contextlib.suppress(RuntimeError):  # the loop ended first (the run was over): nobody waits
            loop.call_soon_threadsafe(settle, result, failure)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await asyncio.wait_for(fut, timeout_s)


async def key_exchange_async(server: ServerAddress, plan: QueryPlan) -> NtsSession:
    """`collectors.nts.key_exchange` in a daemon thread (pyOpenSSL blocks)."""
    timeout_s = max(plan.timeout_s, KE_MIN_TIMEOUT_S)
    return await in_daemon_thread(lambda: key_exchange(server.host, server.port, timeout_s=timeout_s,
                                                       cafile=plan.nts_ca),
                                  f"nts-ke-{server.host}", timeout_s + 1.0)


def _dns_detail(server: ServerAddress, exc: socket.gaierror) -> str:
    """'cannot resolve' only for a name that does not exist (bad input); else transient."""
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return f"cannot resolve {server.host}: unknown host"
    return f"DNS lookup of {server.host} failed: {exc.strerror or exc}"


async def _query_any(server: ServerAddress, addrs: list[tuple[int, tuple]], rto: RtoEstimator,
                     limiter: asyncio.Semaphore, nts: NtsSession | None = None) -> NtpSample:
    """Query the first address; on a network error try the next ones within the same deadline. The
    deadline starts once a slot of `limiter` is ours: time spent queued behind other servers is not
    this server's silence (with thousands of servers and an adapted 0.25 s timeout, queued ones
    expired unasked, as 'no usable address')."""
    loop = asyncio.get_running_loop()
    timeout_s = rto.timeout_s()
    sample: NtpSample | None = None
    async with limiter:
        deadline = loop.time() + timeout_s
        for family, sockaddr in addrs:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            sample = await query_once(server, family, sockaddr, remaining, nts)
            if sample.error != "network":
                return sample
    return sample or _fail(server, "network", "no usable address", timeout_s=timeout_s)


async def sample_servers(servers: Sequence[ServerAddress], plan: QueryPlan,
                         states: dict[str, ServerState], emit: Emit,
                         max_in_flight: int = MAX_IN_FLIGHT) -> None:
    """Sample every server concurrently; one slow server never holds up the others."""
    limiter = asyncio.Semaphore(max_in_flight)
    async with asyncio.TaskGroup() as tg:
        for s in servers:
            tg.create_task(sample_server(s, plan, states.setdefault(s.name, ServerState(s.name)),
                                         emit, limiter))
