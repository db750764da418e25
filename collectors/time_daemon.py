"""Read the host's own time daemon: chronyd (`chronyc -c`), ntpd/ntpsec (`ntpq`), systemd-timesyncd
(`timedatectl show-timesync`), with the kernel's adjtimex state read beside it.

Thin on purpose: run the daemon's own client, parse its output, convert units and signs once, here,
to timekit's (offset = reference − local in s, rates of the local clock in ppm, instants int ns).
What each daemon prints, and its signs (measured on the lab's chronyd where marked):

- chronyc -c tracking: `system time` is NTP time − system time, positive = this clock is slow
  (measured: a server 0.25 s ahead gives +0.2507): timekit's sign as is. `frequency` negative =
  this clock slow (measured: a server gaining 100 ppm gives -102.7): timekit's drift sign as is.
- chronyc -c sources: the offsets are the *local* clock (chrony's corrected time) − the source,
  positive = local fast: the source − this system clock is `system time − offset`.
- ntpq rv/peers: offsets in ms, source − local (NTP's sign); `frequency` is the correction ntpd
  applies (positive: the clock is sped up, its oscillator is slow), so the oscillator's rate is −it.
- timedatectl show-timesync: no offset at all (timesyncd steps/slews and forgets); root delay and
  dispersion as systemd time spans ('4.165ms', '30us'); `Frequency` is the kernel's scaled ppm.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from timekit.collectors.adjtimex import read_kernel_state
from timekit.collectors.clocks import boot_id, read_bracketed, read_mono_raw
from timekit.daemon_samples import DaemonKind, DaemonSample, DaemonSource, SourceState
from timekit.errors import CollectorError
from timekit.units import NS_PER_S

__all__ = [
    "DAEMON_TIMEOUT_S",
    "parse_chronyc",
    "parse_ntpq",
    "parse_timesyncd",
    "read_daemon",
]

DAEMON_TIMEOUT_S = 5.0  # each client call; chronyc gives up on an absent daemon at once
NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01

Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]

_CHRONY_STATES: dict[str, SourceState] = {"*": "selected", "+": "combined", "-": "not_combined",
                                          "x": "falseticker", "~": "jittery", "?": "unusable"}
_NTPQ_TALLY: dict[str, SourceState] = {"*": "selected", "o": "selected", "+": "candidate", "#": "backup",
                                       "-": "not_combined", "x": "falseticker", ".": "excess",
                                       " ": "rejected"}
_CHRONY_LEAP = {"Normal": "normal", "Insert second": "insert", "Delete second": "delete",
                "Not synchronised": "unsynchronised"}
_NTP_LEAP = {0: "normal", 1: "insert", 2: "delete", 3: "unsynchronised"}


def _decimal_s_to_ns(text: str) -> int:
    """'1796290201.652684111' -> exact integer ns (no float rounding)."""
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    if not whole.isdigit() and whole != "" or (frac and not frac.isdigit()):
        raise ValueError(text)
    ns = int(whole or "0") * NS_PER_S + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _num(text: str) -> float:
    """A finite float ('nan' and 'inf' are not numbers a daemon should print): ValueError otherwise."""
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(text)
    return x


def _bad(what: str, text: str) -> CollectorError:
    return CollectorError(f"unexpected {what} output: {' '.join(text.split())[:200]!r}")


# ----------------------------------------------------------------------------- chronyd
def parse_chronyc(text: str) -> dict[str, Any]:
    """`chronyc -n -c -m tracking sources sourcestats` -> DaemonSample fields (no clocks).

    The three reports are told apart by their field counts (14, 10, 8), each row checked.
    Raises CollectorError on anything else.
    """
    tracking: list[str] | None = None
    sources: list[list[str]] = []
    stats: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.strip().split(",")
        if len(parts) == 14 and tracking is None:
            tracking = parts
        elif len(parts) == 10 and parts[0] in ("^", "=", "#"):
            sources.append(parts)
        elif len(parts) == 8:
            stats.append(parts)
        else:
            raise _bad("chronyc", line)
    if tracking is None:
        raise _bad("chronyc tracking", text)
    try:
        ref_id, ref_name, stratum, ref_time, system_s = tracking[:5]
        leap = _CHRONY_LEAP.get(tracking[13])
        if leap is None or not re.fullmatch(r"[0-9A-Fa-f]{8}", ref_id):
            raise ValueError(tracking[13])
        ref_time_ns = _decimal_s_to_ns(ref_time)
        offset_s = _num(system_s)
        out: dict[str, Any] = dict(
            daemon="chronyd", leap=leap, stratum=int(stratum), ref_id=ref_id.upper(),
            ref_name=ref_name or None, ref_time_ns=ref_time_ns or None, offset_s=offset_s,
            rms_offset_s=_num(tracking[6]), frequency_ppm=_num(tracking[7]),
            residual_freq_ppm=_num(tracking[8]), skew_ppm=_num(tracking[9]),
            root_delay_s=_num(tracking[10]), root_dispersion_s=_num(tracking[11]),
            update_interval_s=_num(tracking[12]),
        )
        out["synchronized"] = leap != "unsynchronised" and 0 < out["stratum"] < 16
        rows = []
        for i, p in enumerate(sources):
            st = stats[i] if len(stats) == len(sources) and stats[i][0] == p[2] else None
            adjusted = _num(p[7])
            rows.append(DaemonSource(
                address=p[2], state=_CHRONY_STATES.get(p[1], "unknown"), stratum=int(p[3]), poll=int(p[4]),
                reach=int(p[5], 8), last_rx_s=_num(p[6]) if p[6] != "4294967295" else None,
                offset_s=offset_s - adjusted, error_s=_num(p[9]),
                n_samples=int(st[1]) if st else None, frequency_ppm=_num(st[4]) if st else None,
                freq_skew_ppm=_num(st[5]) if st else None, std_dev_s=_num(st[7]) if st else None,
            ))
    except (ValueError, IndexError) as e:
        raise _bad("chronyc", text) from e
    out["sources"] = tuple(rows)
    return out


def _chronyc_argv(socket: str | None) -> list[str]:
    exe = shutil.which("chronyc")
    if exe is None:
        raise CollectorError("chronyc not found: install chrony's client, or choose another daemon")
    host = ["-h", socket] if socket else []
    return [exe, "-n", "-c", *host, "-m", "tracking", "sources", "sourcestats"]


# ----------------------------------------------------------------------------- ntpd / ntpsec
_RV_PAIR = re.compile(r'(\w+)=("[^"]*"|[^,\n]*)')


def _ntp_hex_ns(text: str) -> int | None:
    """ntpq's 'e3b1d7b5.6a0b4d54  Wed, Jan 20 2021 ...' -> Unix ns (era 0), None for 0."""
    m = re.match(r"\s*([0-9a-fA-F]{8})\.([0-9a-fA-F]{8})", text)
    if m is None:
        raise ValueError(text)
    sec, frac = int(m.group(1), 16), int(m.group(2), 16)
    if sec == 0 and frac == 0:
        return None
    return (sec - NTP_UNIX_OFFSET_S) * NS_PER_S + (frac * NS_PER_S >> 32)


def _ntpq_when_s(text: str) -> float | None:
    """ntpq's `when` column: '33', '2m', '5h', '3d', or '-' (never)."""
    if text in ("-", ""):
        return None
    mult = {"m": 60, "h": 3600, "d": 86_400}.get(text[-1], 1)
    return _num(text[:-1] if mult != 1 else text) * mult


def parse_ntpq(rv: str, peers: str) -> dict[str, Any]:
    """`ntpq -n -c rv` and `ntpq -n -c peers` (ntpd 4.2 or ntpsec) -> DaemonSample fields."""
    pairs = {k: v.strip().strip('"') for k, v in _RV_PAIR.findall(rv)}
    if "stratum" not in pairs or "offset" not in pairs:
        raise _bad("ntpq rv", rv)
    try:
        leap_bits = int(pairs.get("leap", "11"), 2)
        stratum = int(pairs["stratum"])
        out: dict[str, Any] = dict(
            daemon="ntpd", leap=_NTP_LEAP[leap_bits], stratum=stratum,
            ref_name=pairs.get("refid") or None,
            ref_time_ns=_ntp_hex_ns(pairs["reftime"]) if "reftime" in pairs else None,
            offset_s=_num(pairs["offset"]) / 1e3,
            root_delay_s=_num(pairs["rootdelay"]) / 1e3 if "rootdelay" in pairs else None,
            root_dispersion_s=_num(pairs["rootdisp"]) / 1e3 if "rootdisp" in pairs else None,
            frequency_ppm=-_num(pairs["frequency"]) if "frequency" in pairs else None,
            jitter_s=_num(pairs["sys_jitter"]) / 1e3 if "sys_jitter" in pairs else None,
            update_interval_s=(2.0 ** int(pairs["tc"]) if "tc" in pairs and 0 <= int(pairs["tc"]) <= 17
                               else None),  # the poll exponent: NTP's range is 4..17
        )
    except (ValueError, KeyError) as e:
        raise _bad("ntpq rv", rv) from e
    out["synchronized"] = out["leap"] != "unsynchronised" and 0 < stratum < 16
    rows = []
    lines = [ln for ln in peers.splitlines() if ln.strip() and not ln.lstrip().startswith(("remote", "="))
             and "No association" not in ln]  # ntpq's words for a daemon without peers: none
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        tally, rest = line[0], line[1:].split()
        if len(rest) == 1 and i < len(lines):  # a long (IPv6) address on a line of its own, ntpq -w
            rest += lines[i].split()
            i += 1
        if len(rest) != 10:
            raise _bad("ntpq peers", line)
        try:
            delay_s, jitter_s = _num(rest[7]) / 1e3, _num(rest[9]) / 1e3
            rows.append(DaemonSource(
                address=rest[0], state=_NTPQ_TALLY.get(tally, "unknown"), stratum=int(rest[2]),
                poll=int(rest[5]).bit_length() - 1 if int(rest[5]) > 0 else None, reach=int(rest[6], 8),
                last_rx_s=_ntpq_when_s(rest[4]), delay_s=delay_s, offset_s=_num(rest[8]) / 1e3,
                error_s=delay_s / 2 + jitter_s))  # NTP's bound on a sample (delay/2) and its jitter
        except ValueError as e:
            raise _bad("ntpq peers", line) from e
    out["sources"] = tuple(rows)
    sel = next((s for s in rows if s.state == "selected"), None)
    if sel is not None:
        out["ref_name"] = sel.address
    return out


# ----------------------------------------------------------------------------- systemd-timesyncd
_SPAN_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0,
               "h": 3600.0, "d": 86_400.0}


def systemd_span_s(text: str) -> float:
    """A systemd time span ('4.165ms', '1min 4s', '30us', '0', 'infinity' not allowed) -> s."""
    text = text.strip()
    if text == "0":
        return 0.0
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zµ]+)", text):
        if m.start() != pos or m.group(2) not in _SPAN_UNITS:
            raise ValueError(text)
        total += _num(m.group(1)) * _SPAN_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(text)
    return total


def parse_timesyncd(show: str, timesync: str) -> dict[str, Any]:
    """`timedatectl show` and `timedatectl show-timesync --all` -> DaemonSample fields.

    timesyncd keeps no offset: its claim is that this clock is within root delay/2 + root
    dispersion of its server since the last update (`offset_s` None)."""
    props = dict(line.split("=", 1) for line in (show + "\n" + timesync).splitlines() if "=" in line)
    msg = props.get("NTPMessage", "")
    fields_ = dict(re.findall(r"(\w+)=([^,}]*?)\s*(?=,|\}|\s\w+=)", msg))
    try:
        synced = props.get("NTPSynchronized") == "yes"
        stratum = int(fields_["Stratum"]) if "Stratum" in fields_ else None
        leap = _NTP_LEAP[int(fields_["Leap"])] if "Leap" in fields_ else None
        freq = props.get("Frequency")
        out: dict[str, Any] = dict(
            daemon="timesyncd", synchronized=synced and leap != "unsynchronised", leap=leap, stratum=stratum,
            ref_id=fields_.get("Reference") or None,
            ref_name=props.get("ServerAddress") or props.get("ServerName") or None,
            root_delay_s=systemd_span_s(fields_["RootDelay"]) if "RootDelay" in fields_ else None,
            root_dispersion_s=(systemd_span_s(fields_["RootDispersion"])
                               if "RootDispersion" in fields_ else None),
            jitter_s=systemd_span_s(fields_["Jitter"]) if "Jitter" in fields_ else None,
            update_interval_s=(systemd_span_s(props["PollIntervalUSec"])
                               if props.get("PollIntervalUSec") else None),
            # the kernel's frequency correction (scaled ppm): the oscillator runs at minus it
            frequency_ppm=-int(freq) / 65536 if freq and freq.lstrip("-").isdigit() else None,
        )
    except (ValueError, KeyError) as e:
        raise _bad("timedatectl show-timesync", msg or timesync) from e
    if not props:
        raise _bad("timedatectl", show + timesync)
    addr = out["ref_name"]
    out["sources"] = (DaemonSource(address=addr, state="selected" if synced else "unusable",
                                   stratum=stratum, error_s=out["jitter_s"]),) if addr else ()
    return out


# ----------------------------------------------------------------------------- reading
def _run(argv: Sequence[str]) -> tuple[int, str, str]:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=DAEMON_TIMEOUT_S,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    except subprocess.TimeoutExpired as e:
        raise CollectorError(f"{argv[0]} did not answer within {DAEMON_TIMEOUT_S} s") from e
    except OSError as e:
        raise CollectorError(f"cannot run {argv[0]}: {e.strerror or e}") from e
    return res.returncode, res.stdout, res.stderr


def _ask(kind: DaemonKind, chronyc_socket: str | None, run: Runner) -> dict[str, Any]:
    if kind == "chronyd":
        rc, out, err = run(_chronyc_argv(chronyc_socket))
        if rc != 0 or not out.strip():
            raise CollectorError(f"chronyd does not answer chronyc: {' '.join((err or out).split())[:160]}")
        return parse_chronyc(out)
    if kind == "ntpd":
        exe = shutil.which("ntpq")
        if exe is None:
            raise CollectorError("ntpq not found: install ntpsec's or ntp's client, or choose another daemon")
        rc, rv, err = run([exe, "-n", "-c", "rv"])
        if rc != 0 or "stratum" not in rv:
            raise CollectorError(f"ntpd does not answer ntpq: {' '.join((err or rv).split())[:160]}")
        _, peers, _ = run([exe, "-n", "-c", "peers"])
        return parse_ntpq(rv, peers)
    exe = shutil.which("timedatectl")
    if exe is None:
        raise CollectorError("timedatectl not found: systemd-timesyncd cannot be asked")
    rc, show, err = run([exe, "show"])
    rc2, ts, err2 = run([exe, "show-timesync", "--all"])
    if rc != 0 or rc2 != 0 or "NTPMessage" not in ts:
        raise CollectorError(f"systemd-timesyncd does not answer: {' '.join((err2 or err).split())[:160]}")
    return parse_timesyncd(show, ts)


def _clocks() -> tuple[int, int, int, int]:
    """REALTIME, BOOTTIME, MONOTONIC, MONOTONIC_RAW, ns: realtime with boottime and monotonic with raw,
    each as one bracketed pair (a preemption between plain reads would read as a step or a slew)."""
    paired = read_bracketed(time.CLOCK_BOOTTIME, tries=3)
    mono, raw = read_mono_raw()
    return paired.realtime_ns, paired.clock_ns, mono, raw


def read_daemon(kind: DaemonKind | None = None, *, chronyc_socket: str | None = None,
                run: Runner = _run) -> DaemonSample:
    """Ask the host's time daemon (`kind`, or the first of chronyd, ntpd, timesyncd that answers) for
    its state; the clocks and adjtimex are read around the answer. Raises CollectorError when none
    answers (its one line names what was tried)."""
    kinds: tuple[DaemonKind, ...] = (kind,) if kind else ("chronyd", "ntpd", "timesyncd")
    errors = []
    for k in kinds:
        before = _clocks()
        try:
            fields_ = _ask(k, chronyc_socket, run)
        except CollectorError as e:
            if kind:
                raise
            errors.append(f"{k}: {e}")
            continue
        after = _clocks()
        rt, boot, mono, raw = (a + (b - a) // 2 for a, b in zip(before, after, strict=True))
        kernel = read_kernel_state()
        # the daemon answered somewhere inside the span: its middle, ± read_span_ns/2
        sample = DaemonSample(t_local_ns=rt, boottime_ns=boot, monotonic_ns=mono, raw_ns=raw,
                              boot_id=boot_id(), read_span_ns=after[3] - before[3], **fields_)
        if kernel is not None:
            sample = replace(sample, kernel_maxerror_s=kernel.maxerror_s, kernel_esterror_s=kernel.esterror_s,
                             kernel_unsynchronized=kernel.unsynchronized)
        return sample
    raise CollectorError("no time daemon answers (" + "; ".join(errors) + ")")
