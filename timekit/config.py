"""The `timekit collect` config file (TOML): which servers, how often, what else to sample.

    [ntp]
    servers = ["127.0.0.1:11123", "time.example.org"]
    count = 4            # attempts per server per run (a server may be nts://HOST[:KE_PORT]: authenticated)
    nts_ca = "/etc/timekit/ca.pem"   # optional: NTS-KE trust anchors (default: the system's store)
    interval_s = 2.0     # optional; default: chrony-like spacing (fast for loopback)
    timeout_s = 2.0      # cap of the adaptive per-server timeout
    min_poll_s = 64      # cron rule: skip a server queried less than this ago (floor 15 s)

    [clocks]
    enabled = true
    duration_s = 1.0
    rate_hz = 20

    [run]
    budget_s = 50        # abort and keep what is complete past this (below a cron minute)
    start_jitter_s = 10  # sleep a random 0..10 s first, so a fleet's cron runs do not burst (default 0)

    [pauses]             # the pause meter (jHiccup-style), after the clocks
    enabled = true
    duration_s = 2.0
    resolution_s = 0.001
    interval_s = 1.0

    [interval]           # `timekit now` / IntervalClock
    max_drift_ppm = 200  # the bound grows at this (plus the drift estimate's uncertainty)
    wander_ppm = 15      # ... or at this once the drift is measured and the kernel's slews followed
    use_daemon = false   # narrow it to the host's time daemon's claim when timekit finds the daemon ok
    use_stability = true # ... and at most what the measured stability (ADEV's upper 95 % bound) allows
    authenticated_only = false  # only NTS references feed the interval, the skew verdicts and check
    stability_floor_ppm = 1.0  # never below this (chrony's maxclockerror)
    stability_sigmas = 3 # the time error bound: this many times tau * ADEV(tau)
    holdover_width_s = 0.01    # `now`, `check`, `analyze stability`: how long until the interval is wider
    fresh_s = 300        # evidence younger than this: synchronized; older: free_running
    void_after_s = 14400 # older than this: no longer evidence (unknown)
    max_root_distance_s = 1.5

    [skew]               # `timekit analyze skew`
    warn_offset_s = 0.1  # suspect beyond this against the majority
    max_offset_s = 0.5   # quarantined after enter_after consecutive checks beyond this
    enter_after = 3
    leave_after = 5      # consecutive healthy checks to leave quarantine
    max_age_s = 900
    pause_guard_s = 0.5
    hook = "/usr/local/bin/on-quarantine"   # run per transition, env TIMEKIT_NODE, TIMEKIT_TO_STATUS, ...

    [cluster]            # this host's cluster peers: their NTP endpoints (each node's chronyd serves them)
    peers = ["db-2 10.0.0.2", "db-3 10.0.0.3:123", "10.0.0.4"]   # NAME HOST[:PORT] or HOST[:PORT]
                         # sampled every run (no min_poll), never used as references; `self` judged
                         # against their majority ("off from the cluster") apart from the references
                         # ("off from UTC"), at [skew]'s thresholds, hysteresis, hook and pause guard

    [store]
    keep_days = 90       # collect deletes samples older than this (in batches); default: keep all

    [daemon]             # the host's own time daemon, read each run and checked against the references
    kind = "auto"        # chronyd | ntpd | timesyncd | auto (the first that answers) | none
    chronyc_socket = "/run/chrony/chronyd.sock"   # optional; chronyc's default otherwise
"""

from __future__ import annotations

import os
import shlex
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timekit.address import NamedServer, ServerAddress, parse_named_server, parse_server
from timekit.errors import UsageError

MIN_POLL_FLOOR_S = 15.0
MAX_PEERS = 1000  # a cluster judged from each node; a fleet of thousands is `fleet sweep`'s


@dataclass(frozen=True)
class CollectConfig:
    """A validated collect config. Durations in seconds."""

    servers: tuple[ServerAddress, ...] = ()
    peers: tuple[NamedServer, ...] = ()  # [cluster] peers: judged against, never references
    nts_ca: str | None = None  # [ntp] nts_ca: NTS-KE trust anchors (PEM); None: the system's store
    count: int = 4
    interval_s: float | None = None
    timeout_s: float = 2.0
    min_poll_s: float = 64.0
    clocks_enabled: bool = True
    clocks_duration_s: float = 1.0
    clocks_rate_hz: float = 20.0
    budget_s: float = 50.0
    start_jitter_s: float = 0.0
    pauses_enabled: bool = True
    pauses_duration_s: float = 2.0
    pauses_resolution_s: float = 0.001
    pauses_interval_s: float = 1.0
    keep_days: float | None = None  # [store] retention: older samples are deleted by collect
    daemon_kind: str = "auto"  # [daemon]: chronyd, ntpd, timesyncd, auto or none
    chronyc_socket: str | None = None
    interval: dict[str, Any] = field(default_factory=dict)  # IntervalPolicy keyword arguments
    skew: dict[str, Any] = field(default_factory=dict)  # SkewConfig keyword arguments
    source: str = field(default="", compare=False)


_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ntp": {"servers": list, "count": int, "interval_s": (int, float), "timeout_s": (int, float),
            "min_poll_s": (int, float), "nts_ca": str},
    "clocks": {"enabled": bool, "duration_s": (int, float), "rate_hz": (int, float)},
    "run": {"budget_s": (int, float), "start_jitter_s": (int, float)},
    "pauses": {"enabled": bool, "duration_s": (int, float), "resolution_s": (int, float),
               "interval_s": (int, float)},
    "interval": {"max_drift_ppm": (int, float), "wander_ppm": (int, float), "fresh_s": (int, float),
                 "void_after_s": (int, float), "max_root_distance_s": (int, float), "use_daemon": bool,
                 "use_stability": bool, "stability_floor_ppm": (int, float), "stability_sigmas": (int, float),
                 "holdover_width_s": (int, float), "authenticated_only": bool},
    "skew": {"warn_offset_s": (int, float), "max_offset_s": (int, float), "enter_after": int,
             "leave_after": int, "max_age_s": (int, float), "pause_guard_s": (int, float), "hook": str},
    "cluster": {"peers": list},
    "store": {"keep_days": (int, float)},
    "daemon": {"kind": str, "chronyc_socket": str},
}
DAEMON_KINDS = ("auto", "none", "chronyd", "ntpd", "timesyncd")


def _positive(path: str, name: str, value: float, lo: float = 0.0, hi: float = 1e9) -> float:
    if not lo < value <= hi:  # also false for nan
        raise UsageError(f"{path}: {name} = {value} is out of range ({lo} < value <= {hi})")
    return float(value)


MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; /dev/zero must not fill memory


def _read_config_text(p: Path) -> str:
    """The config's text: a regular file (a symlink to one is fine: /etc/timekit.toml often is) of at
    most MAX_CONFIG_BYTES; a FIFO cannot block the open (O_NONBLOCK), /dev/zero cannot fill memory.
    UsageError in one line otherwise."""
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
            raise UsageError(f"cannot read config file {p}: it is {kind}")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES and (chunk := os.read(fd, MAX_CONFIG_BYTES + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"config file {p} is larger than {MAX_CONFIG_BYTES >> 10} KiB: not a timekit config")
    return data.decode("utf-8")


def load_config(path: Path | str) -> CollectConfig:
    """Read and validate a TOML config; raise UsageError naming the file and the problem."""
    p = Path(path)
    try:
        raw = tomllib.loads(_read_config_text(p))
    except FileNotFoundError:
        raise UsageError(f"config file {p} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {p} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {p} is not valid TOML: {exc}") from None
    return config_from_dict(raw, str(p))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> CollectConfig:
    """Validate a parsed config mapping (unknown sections/keys are errors, not ignored)."""
    for section, body in raw.items():
        if section not in _SCHEMA:
            raise UsageError(f"{source}: unknown section [{section}] (known: {', '.join(_SCHEMA)})")
        if not isinstance(body, dict):
            raise UsageError(f"{source}: [{section}] must be a table")
        for key, value in body.items():
            want = _SCHEMA[section].get(key)
            if want is None:
                raise UsageError(f"{source}: unknown key {section}.{key}")
            if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
                raise UsageError(f"{source}: {section}.{key} has the wrong type ({value!r})")
    ntp, clocks, run = raw.get("ntp", {}), raw.get("clocks", {}), raw.get("run", {})
    pauses = raw.get("pauses", {})
    servers = ntp.get("servers", [])
    if not all(isinstance(s, str) for s in servers):
        raise UsageError(f"{source}: ntp.servers must be a list of strings")
    count = ntp.get("count", 4)
    if not 1 <= count <= 10_000:
        raise UsageError(f"{source}: ntp.count = {count} is out of range (1-10000)")
    if pauses.get("resolution_s", 0.001) > min(pauses.get("interval_s", 1.0), pauses.get("duration_s", 2.0)):
        raise UsageError(f"{source}: pauses.resolution_s must not exceed pauses.interval_s or duration_s")
    daemon = raw.get("daemon", {})
    if daemon.get("kind", "auto") not in DAEMON_KINDS:
        raise UsageError(f"{source}: daemon.kind = {daemon['kind']!r} is not one of "
                         f"{', '.join(DAEMON_KINDS)}")
    interval = ntp.get("interval_s")
    min_poll = ntp.get("min_poll_s", 64.0)
    if not MIN_POLL_FLOOR_S <= min_poll <= 86_400:  # (nan fails this too)
        raise UsageError(f"{source}: ntp.min_poll_s = {min_poll} is outside {MIN_POLL_FLOOR_S:.0f}-86400 s "
                         "(the floor keeps us kind to NTP servers)")
    parsed = tuple(parse_server(s) for s in servers)
    return CollectConfig(
        servers=parsed,
        peers=_peers(source, raw.get("cluster", {}).get("peers", []), parsed),
        nts_ca=_nts_ca(source, ntp.get("nts_ca")),
        count=count,
        interval_s=None if interval is None else _positive(source, "ntp.interval_s", interval, hi=3600),
        timeout_s=_positive(source, "ntp.timeout_s", ntp.get("timeout_s", 2.0), hi=60),
        min_poll_s=float(min_poll),
        clocks_enabled=clocks.get("enabled", True),
        clocks_duration_s=_positive(source, "clocks.duration_s", clocks.get("duration_s", 1.0), hi=3600),
        clocks_rate_hz=_positive(source, "clocks.rate_hz", clocks.get("rate_hz", 20.0), hi=10_000),
        budget_s=_positive(source, "run.budget_s", run.get("budget_s", 50.0), hi=86_400),
        start_jitter_s=_jitter(source, run.get("start_jitter_s", 0.0)),
        pauses_enabled=pauses.get("enabled", True),
        pauses_duration_s=_positive(source, "pauses.duration_s", pauses.get("duration_s", 2.0), hi=3600),
        pauses_resolution_s=_positive(source, "pauses.resolution_s", pauses.get("resolution_s", 0.001),
                                      hi=1.0),
        pauses_interval_s=_positive(source, "pauses.interval_s", pauses.get("interval_s", 1.0), hi=3600),
        keep_days=(None if "keep_days" not in raw.get("store", {}) else
                   _positive(source, "store.keep_days", raw["store"]["keep_days"], lo=0.5, hi=36_500)),
        interval=_checked(source, "interval", raw.get("interval", {})),
        skew=_checked(source, "skew", raw.get("skew", {})),
        daemon_kind=daemon.get("kind", "auto"),
        chronyc_socket=daemon.get("chronyc_socket"),
        source=source,
    )


def _checked(source: str, section: str, body: dict[str, Any]) -> dict[str, Any]:
    """Build the section's policy object once so a bad value is reported against the file."""
    from timekit.analysis.interval import IntervalPolicy

    try:
        if section == "interval":
            IntervalPolicy(**body)
        else:
            from timekit.analysis.skew import SkewPolicy

            SkewPolicy(**{k: v for k, v in body.items() if k != "hook"})
            check_hook(body.get("hook"))
    except (ValueError, UsageError) as exc:
        raise UsageError(f"{source}: [{section}] {exc}") from None
    return dict(body)


def _peers(source: str, texts: list[Any], references: tuple[ServerAddress, ...]) -> tuple[NamedServer, ...]:
    """The [cluster] peers, validated: unique names and endpoints, none of them a reference (a server
    judged as UTC and as a cluster member would vote twice), none named `self`."""
    if not all(isinstance(t, str) for t in texts):
        raise UsageError(f"{source}: cluster.peers must be a list of strings "
                         "('NAME HOST[:PORT]' or 'HOST[:PORT]')")
    if len(texts) == 1:
        raise UsageError(f"{source}: cluster.peers names one peer: this host and one peer can never make a "
                         "majority against either (name at least 2)")
    if len(texts) > MAX_PEERS:
        raise UsageError(f"{source}: cluster.peers names {len(texts)} peers; at most {MAX_PEERS} "
                         "(judge a larger fleet from a sweeper: timekit fleet sweep)")
    refs = {r.name for r in references}
    peers: list[NamedServer] = []
    names: set[str] = set()
    endpoints: dict[str, str] = {}
    for text in texts:
        try:
            peer = parse_named_server(text)
        except UsageError as e:
            raise UsageError(f"{source}: cluster.peers {text!r}: {e}") from None
        if peer.name == "self":
            raise UsageError(f"{source}: cluster.peers {text!r}: 'self' is this host, not a peer")
        if peer.name in names:
            raise UsageError(f"{source}: cluster.peers names {peer.name!r} twice")
        if peer.address.name in endpoints:
            raise UsageError(f"{source}: cluster.peers {text!r}: {peer.address.name} is already peer "
                             f"{endpoints[peer.address.name]!r}")
        if peer.address.name in refs:
            raise UsageError(f"{source}: cluster.peers {text!r}: {peer.address.name} is also in ntp.servers "
                             "(a reference is UTC's witness, a peer the cluster's: name it once)")
        names.add(peer.name)
        endpoints[peer.address.name] = peer.name
        peers.append(peer)
    return tuple(peers)


def _nts_ca(source: str, path: str | None) -> str | None:
    return None if path is None else check_nts_ca(path, f"{source}: ntp.nts_ca")


def check_nts_ca(path: str, where: str) -> str:
    """An NTS trust-anchor file: readable, with a PEM certificate in it (UsageError in one line naming
    `where` otherwise)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
    except OSError as e:
        raise UsageError(f"{where} {path}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise UsageError(f"{where} {path}: no PEM certificate in it")
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(head)
    except ValueError as e:
        raise UsageError(f"{where} {path}: a certificate in it does not parse ({e})") from None
    return path


def _jitter(source: str, value: float) -> float:
    """Start jitter, seconds: slept before the run (and its budget) starts, so keep it well under
    the cron period."""
    if not 0 <= value <= 3600:  # (nan fails too)
        raise UsageError(f"{source}: run.start_jitter_s = {value} is out of range (0-3600 s)")
    return float(value)


def check_hook(hook: str | None) -> None:
    """A hook command must name a program, in shell words that parse (UsageError otherwise)."""
    if hook is None:
        return
    try:
        words = shlex.split(hook)
    except ValueError as exc:  # an unclosed quote: `--hook '"'`
        raise UsageError(f"the hook command {hook!r} does not parse: {exc}") from None
    if not words:
        raise UsageError("the hook command is empty")
