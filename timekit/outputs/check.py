"""`timekit check`: one monitoring-plugin verdict (Nagios / Icinga / Sensu conventions).

Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, and one line on stdout::

    TIMEKIT WARNING - offset +25.013 ms beyond warning 10.000 ms | offset=0.025013s;0.01;0.1 ...

The rules are pure (`analysis.verdict.judge`, on the one `Assessment` that `now`, the metrics
and the report render too); this module is the edge: it measures named servers (measure mode)
or reads the store (store mode), and turns every failure (bad flag, bad address, unreachable
server, corrupt store, a bug) into one ``TIMEKIT UNKNOWN - ...`` line and exit 3, never a
traceback (`run_check`; usage errors in `timekit.cli.CheckCommand`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timekit.analysis.verdict import DEFAULT_WINDOW_S, CheckVerdict, Reason, judge, unknown_verdict
from timekit.errors import error_line

if TYPE_CHECKING:
    from timekit.address import ServerAddress
    from timekit.analysis.assessment import Policy
    from timekit.collectors.ntp_client import QueryPlan
    from timekit.store.database import Store
    from timekit.vocabulary import CheckMode, CheckStatus

DEFAULT_COUNT = 4  # queries per named server: chrony's iburst (0.1 s apart on loopback, 2 s otherwise)
DEFAULT_TIMEOUT_S = 10.0  # the whole check's deadline (-t): check_ntp_time's default
QUERY_TIMEOUT_CAP_S = 1.0  # per-query timeout cap: 4 lost queries to a public server still end in ~7 s
MAX_COUNT = 64
MAX_TIMEOUT_S = 3600.0


class PluginTimeout(Exception):
    """The check ran past its -t deadline."""


def burst_plan(deadline_s: float, count: int, servers: Sequence[ServerAddress]) -> QueryPlan:
    """The burst that fits the check's deadline: each query waits at most 1 s and 1/(2·count) of the
    deadline (so `count` lost queries back to back take half of it, the other half left for start-up
    and judging on a busy host); the bursts keep chrony's spacing unless `count` lost queries would
    then overrun 80 % of the deadline, where they go back to back."""
    from timekit.collectors.ntp_client import QueryPlan

    tau = min(QUERY_TIMEOUT_CAP_S, deadline_s / (2 * count))
    plan = QueryPlan(count=count, interval_s=None, timeout_s=tau)
    worst = max((sum(max(plan.spacing_s(i, s), tau) for i in range(count - 1)) + tau for s in servers),
                default=0.0)
    return plan if worst <= 0.8 * deadline_s else QueryPlan(count=count, interval_s=tau, timeout_s=tau)


def _failure_words(attempts: Sequence[Any]) -> str:
    """'(4 attempt(s): timeout ×4; no reply within 0.200 s)': codes counted, the last detail."""
    codes = Counter(s.error or "rejected" for s in attempts)
    words = f"({len(attempts)} attempt(s): " + ", ".join(f"{k} ×{n}" for k, n in codes.items())
    detail = next((s.detail for s in reversed(attempts) if s.detail), None)
    return words + (f"; {detail})" if detail else ")")


def unresolvable(servers: Sequence[ServerAddress]) -> list[str]:
    """'cannot resolve HOST: unknown host' per server whose name does not exist (bad input), found
    before anything is measured: a typo is never stored as an attempt, so it cannot make later
    store-mode checks warn. A transient DNS failure is not bad input (it is measured and stored)."""
    import asyncio
    import socket

    from timekit.collectors.ntp_client import _dns_detail, resolve

    async def one(server: ServerAddress) -> str | None:
        try:
            await resolve(server)
        except socket.gaierror as exc:
            detail = _dns_detail(server, exc)
            return detail if detail.startswith("cannot resolve") else None
        except (OSError, TimeoutError):
            return None
        return None

    async def every() -> list[str | None]:
        return list(await asyncio.gather(*(one(s) for s in servers)))

    return sorted({d for d in asyncio.run(every()) if d is not None})


def not_authenticated(mode: CheckMode, words: str) -> CheckVerdict:
    """CRITICAL: authentication was required (--require-nts) and `words` say why there is none."""
    return CheckVerdict("critical", words, mode=mode, reasons=(Reason("critical", "authentication", words),))


def check_servers(store: Store, servers: Sequence[ServerAddress], policy: Policy, *,
                  count: int = DEFAULT_COUNT, timeout_s: float = DEFAULT_TIMEOUT_S,
                  unreachable: CheckStatus = "critical", nts_ca: str | None = None) -> CheckVerdict:
    """Measure `servers` now (a short burst, stored like `sample ntp`), then judge those servers.

    `timeout_s`: the whole check's deadline (`burst_plan`). Names that do not resolve are bad input
    (UNKNOWN) and nothing is measured or stored; no usable reply from any server is `unreachable`.
    """
    from timekit.pipeline.assess import assess_store
    from timekit.pipeline.sampling import sample_ntp

    t = policy.thresholds
    bad = unresolvable(servers)
    if bad:
        return unknown_verdict("bad input: " + "; ".join(bad), mode="measure", thresholds=t)
    plain = [s.name for s in servers if not s.nts]
    if policy.interval.authenticated_only and plain:
        return not_authenticated("measure", "not authenticated: " + ", ".join(plain)
                                 + " not NTS (nts://HOST), and --require-nts asks for authenticated time")
    plan = dataclasses.replace(burst_plan(timeout_s, count, servers), nts_ca=nts_ca)
    run = sample_ntp(store, servers, plan, command="check")
    if run.unresolved:  # the name vanished between the two look-ups
        return unknown_verdict("bad input: " + "; ".join(run.unresolved), mode="measure", thresholds=t)
    by_server: dict[str, list[Any]] = {}
    for s in run.samples:
        by_server.setdefault(s.server, []).append(s)
    reachable = [a.name for a in servers if any(s.ok for s in by_server.get(a.name, []))]
    failures = {a.name: _failure_words(by_server.get(a.name, [])) for a in servers if a.name not in reachable}
    window_s = max(DEFAULT_WINDOW_S, t.max_age_s)
    found = assess_store(store, policy, servers=reachable, window_s=window_s) if reachable else None
    return judge(found, t, mode="measure", failures=failures, window_s=window_s, unreachable=unreachable)


def check_store(store: Store, policy: Policy, *, now: tuple[int, int] | None = None) -> CheckVerdict:
    """Judge what the store holds now (every server in it); stale beyond `max_age_s`: the verdict of
    the one assessment (`Assessment.verdict`)."""
    from timekit.pipeline.assess import assess_store

    found = assess_store(store, policy, now=now, window_s=max(DEFAULT_WINDOW_S, policy.thresholds.max_age_s))
    if policy.interval.authenticated_only and not found.servers:  # the assessment kept NTS servers only
        return not_authenticated("store", "not authenticated: the store holds no NTS server's samples, and "
                                 "--require-nts asks for authenticated time")
    assert found.verdict is not None
    return found.verdict


def run_check(servers: Sequence[str], db: Path | None = None, *, count: int = DEFAULT_COUNT,
              timeout_s: float = DEFAULT_TIMEOUT_S, max_age: str | None = None, config: Path | None = None,
              now: tuple[int, int] | None = None, unreachable: CheckStatus = "critical",
              default_port: int | None = None, warn_holdover: str | None = None,
              crit_holdover: str | None = None, holdover_width: float | None = None,
              require_nts: bool = False, nts_ca: str | None = None,
              **threshold_flags: float | str | None) -> CheckVerdict:
    """The whole check; never raises: every failure is an UNKNOWN verdict with the reason.

    `timeout_s`: the whole check's deadline (monitoring plugins' -t); past it the verdict is
    `unreachable` when measuring (check_ntp_time's CRITICAL), UNKNOWN when reading the store.
    `config`: a TOML config (collect's); its [interval] section sets the interval policy.
    `default_port`: the port of servers named without one (-p; default 123).
    `now`: (CLOCK_REALTIME, CLOCK_BOOTTIME) ns to judge the store at (default: the clocks now).
    `warn_holdover`/`crit_holdover`: durations (1h, 30m): a holdover to ± `holdover_width` s (default:
    the config's, else 0.01) shorter than these warns / is critical.
    `require_nts`: only authenticated (NTS) sources are judged; none is CRITICAL. `nts_ca`: their
    trust anchors (PEM; default the system's store).
    """
    mode: CheckMode = "measure" if servers else "store"
    try:
        from timekit import settings

        t = settings.thresholds(max_age, warn_holdover, crit_holdover, **threshold_flags)
        if not (isinstance(count, int) and 1 <= count <= MAX_COUNT):
            raise ValueError(f"--count {count} is outside 1..{MAX_COUNT} queries")
        if not (math.isfinite(timeout_s) and 0 < timeout_s <= MAX_TIMEOUT_S):
            raise ValueError(f"--timeout {timeout_s} s is outside 0 < value <= {MAX_TIMEOUT_S:g} s")
        if unreachable not in ("critical", "unknown", "warning"):
            raise ValueError(f"unreachable verdict {unreachable!r} is not critical, warning or unknown")
        if nts_ca is not None:
            from timekit.config import check_nts_ca

            check_nts_ca(nts_ca, "--nts-ca")
        policy = settings.policy(config, thresholds=t, interval={
            "holdover_width_s": holdover_width, "authenticated_only": True if require_nts else None})
        with _deadline(timeout_s):
            from timekit.store.database import Store

            if servers:
                from timekit.address import DEFAULT_NTP_PORT, parse_servers

                targets = parse_servers(servers, default_port or DEFAULT_NTP_PORT)
                with Store.open(db) as store:
                    return check_servers(store, targets, policy, count=count, timeout_s=timeout_s,
                                         unreachable=unreachable, nts_ca=nts_ca)
            with Store.open(db, create=False, readonly=True) as store:
                return check_store(store, policy, now=now)
    except PluginTimeout:
        words = f"timeout: no verdict within {timeout_s:g} s (-t)"
        if mode == "measure" and unreachable != "unknown":
            return CheckVerdict(unreachable, words, mode=mode, reasons=(Reason(unreachable, "check", words),))
        return unknown_verdict(words, mode=mode)
    except KeyboardInterrupt:
        return unknown_verdict("interrupted", mode=mode)
    except Exception as exc:
        return unknown_verdict(error_line(exc, debug_hint="TIMEKIT_DEBUG=1 for a traceback"), mode=mode)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise PluginTimeout in the main thread after `seconds` (a real-time interval timer), as the
    monitoring plugins' alarm(); elsewhere (a library caller's thread) no timer is set."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise PluginTimeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def print_verdict(verdict: CheckVerdict, as_json: bool) -> None:
    """The one line (or the one JSON document) on stdout."""
    if as_json:
        sys.stdout.write(json.dumps(verdict.to_json(), allow_nan=False) + "\n")
    else:
        sys.stdout.write(verdict.status_line() + "\n")
    sys.stdout.flush()
