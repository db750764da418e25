"""The `timekit` command line: parse, call, render. Errors become one stderr line + exit code.

Exit codes: 0 ok; 1 runtime failure; 2 bad input (address, config, option); 75 another
run holds the collect lock; 130 interrupted by Ctrl-C (what was collected is kept). SIGTERM and
SIGHUP stop the same way, then the process dies of the signal (143 or 129 to a shell).
Heavy libraries (pandas, scipy, matplotlib) are imported only inside commands that need them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from timekit.errors import TimekitError
from timekit.samples import NtpSample


def _finite_float(value: Any) -> float:
    """click's float conversion, without NaN and infinity: no flag of timekit means either
    (`--interval inf` once hung forever, `--timeout nan` stored a fake timeout)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


# every float option, ranged or not, converts through this (click's message: "'nan' is not a
# valid float.")
click.types.FloatParamType._number_class = staticmethod(_finite_float)  # type: ignore[assignment]

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings=HELP_OPTIONS,
                  help="Measure time and its uncertainty: NTP offsets, clocks, drift, intervals.")


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"timekit {version('timekit')}")
        except PackageNotFoundError:
            print("timekit (not installed: version unknown)")
        raise typer.Exit(0)


@app.callback()
def _main_options(
    show_version: Annotated[bool, typer.Option("--version", "-V", callback=_version_callback, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Measure time and its uncertainty: NTP offsets, clocks, drift, intervals."""
sample_app = typer.Typer(no_args_is_help=True, help="Take samples now and store them.")
lab_app = typer.Typer(no_args_is_help=True, help="The reference lab: NTP servers on loopback "
                      "with known offsets, drifts and faults.")
servers_app = typer.Typer(no_args_is_help=True, help="Per-server state kept between runs "
                          "(kiss-o'-death holds, adaptive timeouts).")
analyze_app = typer.Typer(no_args_is_help=True, help="Turn stored samples into answers: drift, "
                          "skew against the majority, timeouts.")
app.add_typer(sample_app, name="sample")
app.add_typer(analyze_app, name="analyze")
app.add_typer(lab_app, name="lab")
app.add_typer(servers_app, name="servers")
export_app = typer.Typer(no_args_is_help=True, help="Write stored samples for other tools "
                         "(CSV, Prometheus textfile), atomically.")
app.add_typer(export_app, name="export")
fleet_app = typer.Typer(no_args_is_help=True, help="A fleet's clocks judged from one sweeper: every node's "
                        "NTP endpoint sampled at once, against the fleet's majority.")
app.add_typer(fleet_app, name="fleet")

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
# readable=False: the store says itself why it cannot be read ("cannot read database X: permission
# denied"), in each command's own convention (check: one UNKNOWN line)
DbOpt = Annotated[Path | None, typer.Option("--db", readable=False, help="SQLite store (default $TIMEKIT_DB, "
                                            "else ~/.local/share/timekit/timekit.db).")]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, NtpSample):  # thousands per sweep: its own flat dict, not asdict's deep copy
        return obj.described()
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def emit_json(doc: Any) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(_jsonable(doc), allow_nan=False) + "\n")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # pipes and files get full-width tables (no truncated addresses); terminals, and $COLUMNS where
    # set, their own width
    wide = stream.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(stderr=stderr, highlight=False, width=None if wide else 160)


def warn(msg: str) -> None:
    """One diagnostic line on stderr."""
    print(f"timekit: {msg}", file=sys.stderr)


def _open_store(db: Path | None) -> Any:
    from timekit.store.database import Store

    return Store.open(db)


def _read_store(db: Path | None) -> Any:
    """The store for a command that only reads: it must exist (a typo is not a new store), and read
    access is enough (a monitoring agent's user reading the collector's store)."""
    from timekit.store.database import Store

    return Store.open(db, create=False, readonly=True)


def _parse_servers(servers: list[str]) -> list[Any]:
    from timekit.address import parse_servers

    return parse_servers(servers)


def _progress(total: int, label: str) -> Any:
    """A rich progress bar on stderr when it is a terminal, else a no-op."""
    if not sys.stderr.isatty() or total <= 1:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=_console(stderr=True), transient=True)
    prog.start()
    task = prog.add_task(label, total=total)
    prog.tick = lambda: prog.advance(task)  # type: ignore[attr-defined]
    return prog


# ----------------------------------------------------------------------------- fleet
@fleet_app.command("sweep")
def fleet_sweep_cmd(
    nodes: Annotated[Path, typer.Option("--nodes", help="Nodes file: `HOST[:PORT]` or `NAME HOST[:PORT]` a "
                                        "line (# comments).", readable=False)],
    sweeps: Annotated[int, typer.Option(min=1, max=1_000_000, help="Sweeps to run.")] = 1,
    interval: Annotated[float, typer.Option(min=0.0, max=86_400.0, help="Seconds from one sweep's start to "
                                            "the next.")] = 10.0,
    max_offset: Annotated[float, typer.Option("--max-offset", min=1e-9, help="Seconds from the fleet's "
                          "median beyond which a node heads for quarantine.")] = 0.5,
    warn_offset: Annotated[float, typer.Option("--warn-offset", min=1e-9, help="Seconds from the fleet's "
                           "median beyond which a node is suspect.")] = 0.1,
    enter_after: Annotated[int, typer.Option(min=1, help="Consecutive sweeps beyond max to enter "
                                             "quarantine.")] = 3,
    leave_after: Annotated[int, typer.Option(min=1, help="Consecutive healthy sweeps to leave it.")] = 5,
    burst: Annotated[int, typer.Option(min=1, max=16, help="Queries per node per sweep (the lowest-delay "
                                       "reply counts).")] = 2,
    timeout: Annotated[float, typer.Option(min=0.001, max=60.0, help="Cap of the per-node timeout, "
                                           "seconds.")] = 1.0,
    hook: Annotated[str | None, typer.Option(help="Command run on each transition (env TIMEKIT_NODE, "
                    "TIMEKIT_FROM_STATUS, TIMEKIT_TO_STATUS, TIMEKIT_OFFSET_S, TIMEKIT_REASON).")] = None,
    textfile: Annotated[Path | None, typer.Option(help="Write the last sweep's metrics (node label, fleet "
                        "summary) to this Prometheus text file, atomically.", readable=False)] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Sample every node's NTP endpoint concurrently, judge each against the fleet's median (with its
    NTP bound), and keep each node's quarantine state in the store; outliers first."""
    import time as _time

    from timekit.collectors.ntp_client import QueryPlan
    from timekit.pipeline.fleet import FleetPolicy, read_nodes, sweep

    node_list = read_nodes(nodes)
    policy = FleetPolicy(warn_offset, max_offset, enter_after, leave_after)
    plan = QueryPlan(count=burst, interval_s=0.05 if burst > 1 else None, timeout_s=timeout)
    states: dict[str, Any] = {}
    done: list[Any] = []
    with _open_store(db) as store:
        try:
            for k in range(sweeps):
                started = _time.monotonic()
                result = sweep(store, node_list, policy, plan=plan, states=states, hook=hook)
                done.append(result)
                if textfile is not None:
                    from timekit.outputs.fleet_metrics import write_sweep_metrics

                    write_sweep_metrics(textfile, result)
                for failure in result.hook_failures:
                    warn(failure)
                if sweeps > 1:
                    print(f"sweep {k + 1}/{sweeps}: {len(result.best)}/{len(node_list)} answered, "
                          f"{len(result.quarantined)} quarantined, {len(result.update.transitions)} "
                          f"transition(s), {result.wall_s:.2f} s", file=sys.stderr)
                if k + 1 < sweeps:
                    _time.sleep(max(0.0, interval - (_time.monotonic() - started)))
        except KeyboardInterrupt:
            warn(f"interrupted after {len(done)} sweep(s); each finished sweep is saved")
            if not done:
                raise typer.Exit(130) from None
    last = done[-1].to_json()
    if as_json:
        last["sweeps"] = [{"t_ns": d.t_ns, "answered": len(d.best), "quarantined": d.quarantined,
                           "transitions": [t.node for t in d.update.transitions], "wall_s": d.wall_s}
                          for d in done]
        emit_json(last)
        return
    from timekit.outputs.render import fleet_table

    _console().print(fleet_table(last))


# ----------------------------------------------------------------------------- sample
NtsCaOpt = Annotated[Path | None, typer.Option("--nts-ca", help="PEM file of the CA(s) an NTS server's "
                                               "certificate must chain to (default: the system's trust "
                                               "store, or SSL_CERT_FILE).")]


def _nts_ca(path: Path | None) -> str | None:
    """The --nts-ca file, checked to be a readable PEM file (UsageError in one line otherwise)."""
    from timekit.config import check_nts_ca

    return None if path is None else check_nts_ca(str(path), "--nts-ca")

@sample_app.command("ntp")
def sample_ntp_cmd(
    servers: Annotated[list[str], typer.Argument(help="HOST, HOST:PORT, [IPv6]:PORT, or nts://HOST[:KE_PORT] "
                                                 "(authenticated, RFC 8915).")],
    count: Annotated[int, typer.Option(min=1, max=100_000, help="Attempts per server.")] = 4,
    interval: Annotated[float | None, typer.Option(
        min=0.0, max=86_400.0, help="Seconds between attempts to one server (default: a 4-query burst, "
        "2 s apart, then 64 s; 0.1 s / 1 s for loopback).")] = None,
    timeout: Annotated[float, typer.Option(
        min=0.001, max=60.0, help="Cap of the per-server adaptive timeout, seconds.")] = 2.0,
    nts_ca: NtsCaOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Query NTP servers (concurrently) and store every attempt, valid or not."""
    from timekit.collectors.ntp_client import QueryPlan
    from timekit.pipeline.sampling import sample_ntp

    targets = _parse_servers(servers)
    plan = QueryPlan(count=count, interval_s=interval, timeout_s=timeout, nts_ca=_nts_ca(nts_ca))
    with _open_store(db) as store:
        prog = _progress(count * len(targets), "sampling")
        try:
            run = sample_ntp(store, targets, plan,
                             on_sample=(lambda _s: prog.tick()) if prog else None)
        finally:
            if prog:
                prog.stop()
        if any(s.ok for s in run.samples):
            from timekit.pipeline.assess import publish_quietly

            publish_quietly(store)
    if as_json:
        emit_json({"samples": run.samples})
    else:
        from timekit.outputs.render import ntp_summary_table

        _console().print(ntp_summary_table(run.samples))
    for message in run.unresolved:
        warn(message)
    if run.unresolved:
        raise typer.Exit(2)


@sample_app.command("clocks")
def sample_clocks_cmd(
    duration: Annotated[float, typer.Option(min=0.0, max=86_400.0, help="Seconds to sample.")] = 2.0,
    rate: Annotated[float, typer.Option(min=0.01, max=10_000.0, help="Snapshots per second.")] = 20.0,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Sample REALTIME against MONOTONIC/RAW/BOOTTIME/TAI and the kernel's adjtimex state."""
    from timekit.pipeline.sampling import sample_clocks_run

    with _open_store(db) as store:
        run = sample_clocks_run(store, duration, rate)
    doc = {"clocks": run.report, "kernel": run.kernel, "resolution_ns": run.resolution_ns,
           "read_cost_ns": run.read_cost_ns}
    if as_json:
        emit_json(doc)
    else:
        from timekit.outputs.render import clocks_text

        _console().print(clocks_text(run))


@sample_app.command("daemon")
def sample_daemon_cmd(
    kind: Annotated[str | None, typer.Option("--daemon", help="chronyd, ntpd or timesyncd (default: the "
                                             "first that answers).")] = None,
    chronyc_socket: Annotated[str | None, typer.Option(help="chronyd's command socket (chronyc -h).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config: its [interval] policy, and "
                                                "its [daemon] section when no option is given.")] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Read the host's time daemon (chronyd, ntpd/ntpsec, systemd-timesyncd), store the reading and
    check its claims against timekit's own measurement of the references in the store."""
    from timekit.errors import UsageError
    from timekit.pipeline.assess import assess_store
    from timekit.pipeline.sampling import sample_daemon_run
    from timekit.settings import policy

    if config is not None and kind is None and chronyc_socket is None:
        from timekit.config import load_config

        cfg = load_config(config)
        if cfg.daemon_kind == "none":
            raise UsageError(f"{config} says [daemon] kind = \"none\": name one with --daemon")
        kind = None if cfg.daemon_kind == "auto" else cfg.daemon_kind
        chronyc_socket = cfg.chronyc_socket
    if kind is not None and kind not in ("chronyd", "ntpd", "timesyncd"):
        raise UsageError(f"--daemon {kind!r}: choose chronyd, ntpd or timesyncd")
    with _open_store(db) as store:
        reading = sample_daemon_run(store, kind, chronyc_socket)
        verdict = assess_store(store, policy(config)).daemon
    if as_json:
        emit_json({"daemon": reading.to_dict(), "verdict": verdict.to_json() if verdict else None})
    else:
        from timekit.outputs.render import daemon_text

        _console().print(daemon_text(reading, verdict))


@sample_app.command("pauses")
def sample_pauses_cmd(
    duration: Annotated[float, typer.Option(min=0.0, max=86_400.0, help="Seconds to measure.")] = 10.0,
    resolution: Annotated[float, typer.Option(min=0.0001, max=1.0,
                                              help="Sleep asked for each time, s.")] = 0.001,
    interval: Annotated[float, typer.Option(min=0.001, max=3600.0, help="Seconds per summary.")] = 1.0,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Pause meter (jHiccup-style): how late a sleeper wakes up, percentiles per interval, stored."""
    from timekit.pipeline.sampling import sample_pauses_run

    with _open_store(db) as store:
        prog = _progress(max(1, round(duration / interval)), "measuring pauses")
        try:
            rows = sample_pauses_run(store, duration, resolution_s=resolution, interval_s=interval,
                                     on_interval=(lambda _iv: prog.tick()) if prog else None)
        finally:
            if prog:
                prog.stop()
    if as_json:
        emit_json({"pauses": rows})
    else:
        from timekit.outputs.render import pauses_table

        _console().print(pauses_table(rows))


# ----------------------------------------------------------------------------- collect
@app.command("collect")
def collect_cmd(
    config: Annotated[Path, typer.Option("--config", help="TOML config (see README).")],
    wait: Annotated[float, typer.Option(min=0.0, max=86_400.0, help="Seconds to wait for an overlapping run "
                                        "before exiting 75.")] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when the run went well "
                                        "(cron mails only what a job prints); problems still go to "
                                        "stderr.")] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """One cron-sized run of everything the config names; overlapping runs never interleave."""
    from timekit.pipeline.collect import collect

    result = collect(config, db, wait_s=wait)
    for failure in result.skew.hook_failures if result.skew is not None else []:
        warn(failure)
    if as_json:
        emit_json(result.to_json())
    elif quiet:
        pass
    else:
        from timekit.outputs.render import collect_text

        _console().print(collect_text(result))
    if result.daemon_error:
        warn(f"time daemon not read: {result.daemon_error}")
    for message in result.ntp.unresolved:  # a typo in the config: said every run, never stored
        warn(f"{message} (fix {config})")
    if result.budget_exceeded:
        warn(f"run budget exceeded: kept {len(result.ntp.samples)} samples, the rest was not taken")
        raise typer.Exit(1)
    if result.ntp.unresolved:
        raise typer.Exit(2)


# ----------------------------------------------------------------------------- analyze
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config; its [interval] and "
                                                "[skew] sections set the defaults (see README).")]
ServerOpt = Annotated[list[str] | None, typer.Option("--server", help="Only this server (repeatable).")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Only samples this recent: 90s, 15m, 2h, 7d.")]


def _since_ns(since: str | None) -> int | None:
    if since is None:
        return None
    from timekit.collectors.clocks import realtime_ns
    from timekit.errors import UsageError
    from timekit.units import parse_duration_s

    try:
        return realtime_ns() - round(parse_duration_s(since) * 1e9)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None


def _policy(config: Path | None, **interval_flags: Any) -> Any:
    from timekit.settings import policy

    return policy(config, interval=interval_flags)


@analyze_app.command("drift")
def analyze_drift_cmd(server: ServerOpt = None, since: SinceOpt = None, config: ConfigOpt = None,
                      as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """Drift of the local clock against each reference (ppm, 95% CI), robust to steps and outliers.

    Without --since: the fit `check`, `now` and the metrics use (each server's newest samples);
    with it: every usable sample since then."""
    from timekit.outputs.drift_report import drift_results
    from timekit.outputs.render import drift_table
    from timekit.pipeline.assess import assess_store
    from timekit.store.evidence import FIT_WINDOW

    names = [s.name for s in _parse_servers(server)] if server else None
    since_ns = _since_ns(since)
    with _read_store(db) as store:
        found = assess_store(store, _policy(config), servers=names, since_ns=since_ns,
                             per_server=None if since_ns is not None else FIT_WINDOW)
    from timekit.outputs.render import in_order

    results = in_order(drift_results(found), "server", names)
    if as_json:
        emit_json({"results": results})
    else:
        _console().print(drift_table(results))


HoldoverWidthOpt = Annotated[float | None, typer.Option("--holdover-width", min=1e-9, max=3600.0,
                            help="The half-width (s) the holdover runs to (default: the config's "
                            "[interval] holdover_width_s, else 0.01).")]


@analyze_app.command("stability")
def analyze_stability_cmd(
    server: ServerOpt = None, since: SinceOpt = None, holdover_width: HoldoverWidthOpt = None,
    config: ConfigOpt = None, as_json: JsonOpt = False, db: DbOpt = None,
) -> None:
    """Clock stability per reference: Allan, modified Allan and time deviation with 95% intervals
    (allantools), and the holdover: how long until the interval is wider than ±--holdover-width.

    Without --since: the evidence `check` and `now` use (each server's newest samples); with it: every
    usable sample since then. A step splits the series: the samples since the newest one are used."""
    from timekit.analysis.assessment import assess
    from timekit.outputs.holdover_words import holdover_doc
    from timekit.outputs.render import in_order
    from timekit.outputs.stability_report import stability_results, stability_table
    from timekit.store.evidence import FIT_WINDOW, read_evidence

    names = [s.name for s in _parse_servers(server)] if server else None
    since_ns = _since_ns(since)
    pol = _policy(config, holdover_width_s=holdover_width)
    with _read_store(db) as store:
        ev = read_evidence(store, pol.interval, since_ns=since_ns, servers=names,
                           per_server=None if since_ns is not None else FIT_WINDOW)
    found = assess(ev, pol)
    doc = {"results": in_order(stability_results(ev, found, pol.interval), "server", names),
           "holdover": holdover_doc(found.holdover)}
    if as_json:
        emit_json(doc)
    else:
        _console().print(stability_table(doc))


@analyze_app.command("events")
def analyze_events_cmd(server: ServerOpt = None, since: SinceOpt = None, as_json: JsonOpt = False,
                       db: DbOpt = None) -> None:
    """Steps, frequency changes and spikes in each reference's offsets, found from the NTP error bounds
    (root distance) and explained. Without --since: each server's newest samples; with it: every usable
    sample since then."""
    from timekit.outputs.events_report import event_scans, events_doc, events_table
    from timekit.outputs.render import in_order
    from timekit.store.evidence import FIT_WINDOW, read_evidence

    names = [s.name for s in _parse_servers(server)] if server else None
    since_ns = _since_ns(since)
    with _read_store(db) as store:
        ev = read_evidence(store, _policy(None).interval, since_ns=since_ns, servers=names,
                           per_server=None if since_ns is not None else FIT_WINDOW)
    doc = events_doc(*event_scans(ev))
    doc["results"] = in_order(doc["results"], "server", names)
    if as_json:
        emit_json(doc)
    else:
        _console().print(events_table(doc))


@analyze_app.command("timeout")
def analyze_timeout_cmd(server: ServerOpt = None, since: SinceOpt = None, as_json: JsonOpt = False,
                        db: DbOpt = None) -> None:
    """Recommended timeout per server from its measured round trips (RFC 6298, phi accrual, quantile)."""
    from timekit.outputs.render import in_order, timeout_table
    from timekit.outputs.timeout_report import timeout_results

    names = [s.name for s in _parse_servers(server)] if server else None
    with _read_store(db) as store:
        results = in_order(timeout_results(store, servers=names, since_ns=_since_ns(since)), "server", names)
    if as_json:
        emit_json({"results": results})
    else:
        _console().print(timeout_table(results))


@analyze_app.command("skew")
def analyze_skew_cmd(
    max_offset: Annotated[float | None, typer.Option("--max-offset", min=1e-9, help="Seconds from the "
                          "majority beyond which a node heads for quarantine (default 0.5).")] = None,
    warn_offset: Annotated[float | None, typer.Option("--warn-offset", min=1e-9, help="Seconds from the "
                           "majority beyond which a node is suspect (default 0.1).")] = None,
    enter_after: Annotated[int | None, typer.Option(min=1, help="Consecutive checks beyond max "
                           "offset to enter quarantine (default 3).")] = None,
    leave_after: Annotated[int | None, typer.Option(min=1, help="Consecutive healthy checks to "
                           "leave quarantine (default 5).")] = None,
    hook: Annotated[str | None, typer.Option(help="Command run on each committed transition (env "
                    "TIMEKIT_NODE, TIMEKIT_FROM_STATUS, TIMEKIT_TO_STATUS, TIMEKIT_OFFSET_S, "
                    "TIMEKIT_REASON).")] = None,
    commit: Annotated[bool, typer.Option("--commit", help="Save the quarantine state this check reaches "
                      "and run the hook (what `collect` does every run); without it: a report only.")
                      ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Each reference and this host (`self`) against the majority, and the sticky quarantine state;
    a report unless --commit (quarantine advances in `collect`, the scheduled job)."""
    from timekit.pipeline.skewcheck import run_skew_check
    from timekit.settings import policy

    pol = policy(config, skew={"max_offset_s": max_offset, "warn_offset_s": warn_offset,
                               "enter_after": enter_after, "leave_after": leave_after})
    peers = None  # without a config: every stored peer's newest reading
    if config is not None:
        from timekit.config import load_config
        from timekit.settings import config_section

        hook = hook if hook is not None else config_section(config, "skew").get("hook")
        peers = [p.name for p in load_config(config).peers]
    with _open_store(db) if commit else _read_store(db) as store:
        report = run_skew_check(store, pol, hook=hook, commit=commit, peers=peers)
    doc = report.to_json()
    if as_json:
        emit_json(doc)
    else:
        from timekit.outputs.render import skew_table

        _console().print(skew_table(doc))
    for failure in report.hook_failures:
        warn(failure)


@app.command("now")
def now_cmd(
    max_drift_ppm: Annotated[float | None, typer.Option("--max-drift-ppm", help="Assumed bound on the "
                             "clock's unseen drift, ppm (default 200).")] = None,
    with_daemon: Annotated[bool | None, typer.Option("--with-daemon/--without-daemon", help="Narrow the "
                           "interval to the host's time daemon's claim when timekit's check of it found "
                           "nothing wrong, as ClockBound trusts it (default: the config's [interval] "
                           "use_daemon, else off).")] = None,
    holdover_width: HoldoverWidthOpt = None,
    server: ServerOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """What time it really is: [earliest, latest] containing the references' true time, and the holdover
    (how long it would stay within ±--holdover-width if the references fell silent now)."""
    from timekit.pipeline.assess import assess_store

    pol = _policy(config, max_drift_ppm=max_drift_ppm, use_daemon=with_daemon,
                  holdover_width_s=holdover_width)
    names = [s.name for s in _parse_servers(server)] if server else None
    if with_daemon:  # a fresh reading of the daemon, stored, so its claim has not aged
        from timekit.errors import CollectorError
        from timekit.pipeline.sampling import sample_daemon_run

        kind, socket_path, wanted = None, None, True
        if config is not None:
            from timekit.config import load_config

            cfg = load_config(config)
            wanted = cfg.daemon_kind != "none"
            kind = None if cfg.daemon_kind == "auto" else cfg.daemon_kind
            socket_path = cfg.chronyc_socket
        if not wanted:
            warn(f"{config} says [daemon] kind = \"none\": the interval is timekit's own")
            pol = _policy(config, max_drift_ppm=max_drift_ppm, use_daemon=False,
                          holdover_width_s=holdover_width)
        else:
            with _open_store(db) as store:
                try:
                    sample_daemon_run(store, kind, socket_path, command="now daemon")
                except CollectorError as e:
                    warn(f"time daemon not read now (an earlier reading may still narrow it): {e}")
    with _read_store(db) as store:
        found = assess_store(store, pol, servers=names)
        est = found.interval
        assert est is not None
        # what every reference says now, under the configured (not a one-off flag's) assumptions:
        # the freshest state for every IntervalClock on this host, when this user may write it (a
        # reader that is not the writer just reads)
        from timekit.store.published_state import state_path_for

        clock_file = state_path_for(store.path)
        writable = os.access(clock_file, os.W_OK) if clock_file.exists() else os.access(
            clock_file.parent, os.W_OK)
        if names is None and max_drift_ppm is None and with_daemon is None and writable:
            from timekit.pipeline.assess import publish_quietly

            publish_quietly(store, state=found.state)
    from timekit.outputs.render import interval_doc, interval_text

    doc = interval_doc(est, found.holdover)
    if as_json:
        emit_json(doc)
    else:
        print(interval_text(doc))
    if est.earliest_ns is None:
        warn(f"no interval: {est.reason}")
        raise typer.Exit(1)


@app.command("daemon")
def daemon_cmd(
    servers: Annotated[list[str] | None, typer.Argument(help="HOST, HOST:PORT or [IPv6]:PORT (default: "
                                                       "the --config file's [ntp] servers).")] = None,
    interval: Annotated[float | None, typer.Option(min=0.01, max=86_400.0, help="Seconds between rounds "
                        "(default 64; 1 for loopback servers).")] = None,
    timeout: Annotated[float, typer.Option(min=0.001, max=60.0, help="Per-query timeout cap, s.")] = 1.0,
    rounds: Annotated[int | None, typer.Option(min=1, help="Stop after this many rounds "
                      "(default: run until Ctrl-C).")] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Keep sampling and publish the clock state after every round, for IntervalClock readers."""
    import time

    from timekit.collectors.ntp_client import QueryPlan
    from timekit.pipeline.assess import publish_quietly
    from timekit.pipeline.sampling import sample_ntp

    if servers:
        targets = _parse_servers(servers)
    elif config is not None:
        from timekit.config import load_config

        targets = list(load_config(config).servers)
    else:
        targets = []
    if not targets:
        from timekit.errors import UsageError

        raise UsageError("daemon: name the servers, or give a --config whose [ntp] section lists them")
    policy = _policy(config)  # validated before the first round
    every_s = interval if interval is not None else (1.0 if all(t.is_loopback for t in targets) else 64.0)
    done = 0
    with _open_store(db) as store:
        while rounds is None or done < rounds:
            started = time.monotonic()
            run = sample_ntp(store, targets, QueryPlan(count=1, interval_s=0.0, timeout_s=timeout),
                             command="daemon")
            publish_quietly(store, policy)
            done += 1
            ok = sum(s.ok for s in run.samples)
            print(f"timekit daemon: round {done}: {ok}/{len(run.samples)} replies ok, state published",
                  file=sys.stderr)
            for message in run.unresolved:
                warn(message)
            if rounds is not None and done >= rounds:
                break
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))


# ----------------------------------------------------------------------------- export csv, report
@export_app.command("csv")
def export_csv_cmd(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (atomically replaced; - for "
                                      "stdout; a device, FIFO or another user's symlink is refused).")],
    since: SinceOpt = None,
    server: ServerOpt = None,
    kind: Annotated[str, typer.Option("--kind", help="ntp (default), clocks, pauses or events.")] = "ntp",
    ok_only: Annotated[bool, typer.Option("--ok-only", help="ntp: usable samples only (no failed "
                                          "attempts, so every *_ns column is complete and exact).")] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Every stored sample of one kind as CSV (one row per sample; pandas reads it with no options)."""
    from timekit.atomic_files import check_out_path
    from timekit.outputs.export_csv import export_csv

    _stdout_once(out, as_json)
    check_out_path(out)  # before any work: a device, FIFO or planted symlink is refused at once
    names = [s.name for s in _parse_servers(server)] if server else None
    since_ns = _since_ns(since)
    with _read_store(db) as store:
        res = export_csv(store, out, kind=kind, since_ns=since_ns, servers=names, ok_only=ok_only)
    if as_json:
        emit_json({"out": str(res.path), "kind": res.kind, "rows": res.rows, "columns": list(res.columns)})
    else:
        print(f"wrote {res.rows} {res.kind} rows to {'stdout' if str(out) == '-' else res.path}",
              file=sys.stderr if str(out) == "-" else sys.stdout)


def _stdout_once(out: Path, as_json: bool) -> None:
    """`--out -` and `--json` would both write stdout: one of them."""
    if str(out) == "-" and as_json:
        from timekit.errors import UsageError

        raise UsageError("--out - and --json both write to stdout; choose one")


@app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs, CSV and summary.md.")],
    since: SinceOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Plots a person can read (offset, RTT, drift, pauses), the CSV and a summary, into a directory."""
    from timekit.outputs.report import write_report

    since_ns = _since_ns(since)
    with _read_store(db) as store:
        res = write_report(store, out, since_ns=since_ns)
    if as_json:
        emit_json({"directory": str(res.directory), "files": list(res.files), "servers": list(res.servers),
                   "n_attempts": res.n_attempts, "notes": list(res.notes)})
    else:
        print(f"report for {len(res.servers)} servers ({res.n_attempts} attempts) in {res.directory}: "
              + ", ".join(res.files))
        for note in res.notes:
            print(f"note: {note}")


# ----------------------------------------------------------------------------- prometheus
@export_app.command("prometheus")
def export_prometheus_cmd(
    out: Annotated[Path, typer.Option("--out", help="File for node_exporter's textfile collector, "
                                      "e.g. /var/lib/prometheus/node-exporter/timekit.prom (atomic).")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Prometheus metrics (timekit_*) of the store now, written atomically for the textfile collector."""
    from timekit.atomic_files import check_out_path
    from timekit.outputs.metrics import export_textfile

    _stdout_once(out, as_json)
    check_out_path(out)
    n = export_textfile(out, db, policy=_policy(config))
    to_stdout = str(out) == "-"
    if out.suffix != ".prom" and not to_stdout:
        warn(f"warning: node_exporter's textfile collector only reads *.prom files, not {out.name}")
    if as_json:
        emit_json({"out": str(out), "samples": n})
    else:
        print(f"wrote {n} metric samples to {'stdout' if to_stdout else out}",
              file=sys.stderr if to_stdout else sys.stdout)


@app.command("exporter")
def exporter_cmd(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 9123,
    bind: Annotated[str, typer.Option(help="Address to listen on; keep loopback unless a firewall "
                                      "guards the port.")] = "127.0.0.1",
    refresh: Annotated[float, typer.Option(min=0.0, max=3600.0, help="Read the store at most once per this "
                                           "many seconds; scrapes in between share that reading.")] = 5.0,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Serve the Prometheus metrics over HTTP (/metrics): at most 32 connections at once, idle ones
    closed after 5 s, the store read at most once per --refresh seconds and shared by every scraper."""
    from timekit.outputs.metrics import start_exporter, wait_for_stop

    exporter = start_exporter(db, port=port, bind=bind, policy=_policy(config), on_error=warn,
                              refresh_s=refresh)
    try:
        print(f"timekit exporter: serving {exporter.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        if not exporter.loopback:
            warn(f"warning: listening on {bind}: every host that reaches the port reads the metrics")
        if as_json:
            emit_json({"url": exporter.url})
            sys.stdout.flush()
        wait_for_stop()
    finally:
        exporter.close()
    print("timekit exporter: stopped", file=sys.stderr)


def _thr(flag: str, words: str, field: str, unit: str = "s", short: str | None = None,
         metavar: str = "RANGE") -> Any:
    """A threshold flag whose help shows the default from timekit.analysis.thresholds (no second copy);
    its value is a number or a monitoring-plugin range (`-0.001:0.001`, `~:5`, `@0:0.5`)."""
    from timekit.analysis.thresholds import DEFAULT_THRESHOLDS

    default = f"{getattr(DEFAULT_THRESHOLDS, field):g}{f' {unit}' if unit else ''}"
    names = (flag, short) if short else (flag,)
    return typer.Option(*names, metavar=metavar, help=f"{words} (default {default}).", show_default=False)


# the threshold flags of `check` and `rules` (one definition: the rules must match the check)
WarnOffsetOpt = Annotated[str | None, _thr("--warn-offset", "|offset| warning", "warn_offset_s", short="-w")]
CritOffsetOpt = Annotated[str | None, _thr("--crit-offset", "|offset| critical", "crit_offset_s", short="-c")]
WarnJitterOpt = Annotated[str | None, _thr("--warn-jitter", "Jitter warning", "warn_jitter_s")]
CritJitterOpt = Annotated[str | None, _thr("--crit-jitter", "Jitter critical", "crit_jitter_s")]
WarnDriftOpt = Annotated[str | None, _thr("--warn-drift", "|drift| warning", "warn_drift_ppm", "ppm")]
CritDriftOpt = Annotated[str | None, _thr("--crit-drift", "|drift| critical", "crit_drift_ppm", "ppm")]
WarnUncertaintyOpt = Annotated[str | None, _thr("--warn-uncertainty", "Interval half-width warning",
                                                  "warn_uncertainty_s")]
CritUncertaintyOpt = Annotated[str | None, _thr("--crit-uncertainty", "Interval half-width critical",
                                                  "crit_uncertainty_s")]
WarnStratumOpt = Annotated[str | None, _thr("--warn-stratum", "Stratum above this warns", "warn_stratum", "")]
CritStratumOpt = Annotated[str | None, _thr("--crit-stratum", "Stratum above this is critical",
                                            "crit_stratum", "")]
WarnPauseOpt = Annotated[str | None, _thr("--warn-pause", "Worst pause warning", "warn_pause_s")]
CritPauseOpt = Annotated[str | None, _thr("--crit-pause", "Worst pause critical", "crit_pause_s")]
MaxAgeOpt = Annotated[str | None, _thr("--max-age", "A newest sample older than this is stale "
                                       "(check: UNKNOWN); 900, 15m, 2h", "max_age_s", metavar="DURATION")]
WarnHoldoverOpt = Annotated[str | None, typer.Option(
    "--warn-holdover", metavar="DURATION", help="Warn when the holdover (how long the interval stays "
    "within ±--holdover-width without references) is shorter: 1h, 30m (default: not judged).")]
CritHoldoverOpt = Annotated[str | None, typer.Option(
    "--crit-holdover", metavar="DURATION", help="Critical when the holdover is shorter (default: not "
    "judged).")]
THRESHOLD_FLAGS = {"warn_offset": "warn_offset_s", "crit_offset": "crit_offset_s",
                   "warn_jitter": "warn_jitter_s", "crit_jitter": "crit_jitter_s",
                   "warn_drift": "warn_drift_ppm", "crit_drift": "crit_drift_ppm",
                   "warn_uncertainty": "warn_uncertainty_s", "crit_uncertainty": "crit_uncertainty_s",
                   "warn_stratum": "warn_stratum", "crit_stratum": "crit_stratum",
                   "warn_pause": "warn_pause_s", "crit_pause": "crit_pause_s"}


def _threshold_kwargs(flags: dict[str, Any]) -> dict[str, Any]:
    """A command's threshold flag values keyed by their `Thresholds` field names."""
    return {field: flags[flag] for flag, field in THRESHOLD_FLAGS.items()}


@app.command("rules")
def rules_cmd(
    warn_offset: WarnOffsetOpt = None,
    crit_offset: CritOffsetOpt = None,
    warn_jitter: WarnJitterOpt = None,
    crit_jitter: CritJitterOpt = None,
    warn_drift: WarnDriftOpt = None,
    crit_drift: CritDriftOpt = None,
    warn_uncertainty: WarnUncertaintyOpt = None,
    crit_uncertainty: CritUncertaintyOpt = None,
    warn_stratum: WarnStratumOpt = None,
    crit_stratum: CritStratumOpt = None,
    warn_pause: WarnPauseOpt = None,
    crit_pause: CritPauseOpt = None,
    max_age: MaxAgeOpt = None,
    warn_holdover: WarnHoldoverOpt = None,
    crit_holdover: CritHoldoverOpt = None,
    fleet: Annotated[bool, typer.Option("--fleet", help="Instead: recording and alerting rules that judge "
                     "every host against the fleet's median offset (below: --fleet-*).")] = False,
    fleet_warn_offset: Annotated[float, typer.Option("--fleet-warn-offset", min=1e-9, help="Seconds beyond "
                                 "its uncertainty from the fleet's median for a warning.")] = 0.1,
    fleet_max_offset: Annotated[float, typer.Option("--fleet-max-offset", min=1e-9, help="Seconds beyond "
                                "its uncertainty from the fleet's median for a critical.")] = 0.5,
    fleet_for: Annotated[str, typer.Option("--fleet-for", help="How long a host must stay beyond before "
                         "its alert fires (Prometheus duration).")] = "5m",
    fleet_min_hosts: Annotated[int, typer.Option("--fleet-min-hosts", min=2, help="Fewer hosts than this: "
                               "no fleet verdict.")] = 3,
    sweep_stale: Annotated[float, typer.Option("--sweep-stale", min=1.0, help="Seconds after which a fleet "
                           "sweeper's last sweep is stale.")] = 180.0,
    as_json: JsonOpt = False,
) -> None:
    """Prometheus alerting rules (YAML) for the timekit_* metrics, at `timekit check`'s thresholds
    (the same flags as check, so the rules can match a `timekit check --warn-offset ...`); with
    --fleet, the fleet's rules instead."""
    from timekit.outputs.metrics import rules_document, rules_thresholds, rules_yaml

    if fleet:
        from timekit.errors import UsageError
        from timekit.outputs.fleet_rules import fleet_rules_document, fleet_rules_yaml

        if not re.fullmatch(r"([0-9]+(ms|[smhdwy]))+", fleet_for):
            raise UsageError(f"--fleet-for {fleet_for!r}: a Prometheus duration like 5m, 30s, 1h30m")
        kw = dict(warn_offset_s=fleet_warn_offset, max_offset_s=fleet_max_offset, for_=fleet_for,
                  min_hosts=fleet_min_hosts, sweep_stale_s=sweep_stale)
        try:
            fleet_rules_document(**kw)  # type: ignore[arg-type]
        except ValueError as e:
            raise UsageError(str(e)) from None
        if as_json:
            emit_json(fleet_rules_document(**kw))  # type: ignore[arg-type]
        else:
            sys.stdout.write(fleet_rules_yaml(**kw))
        return

    th = rules_thresholds(max_age, warn_holdover, crit_holdover, **_threshold_kwargs(locals()))
    if as_json:
        emit_json(rules_document(th))
    else:
        sys.stdout.write(rules_yaml(th))


# ----------------------------------------------------------------------------- check
class CheckCommand(typer.core.TyperCommand):
    """`timekit check`'s command: a usage error is an UNKNOWN verdict on stdout (exit 3), not exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        as_json = "--json" in args  # before parsing: click consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            from timekit.analysis.verdict import EXIT_CODES, UNKNOWN, unknown_verdict
            from timekit.outputs.check import print_verdict

            print_verdict(unknown_verdict(f"bad input: {exc.format_message()}"), as_json)
            raise click.exceptions.Exit(EXIT_CODES[UNKNOWN]) from None


@app.command("check", cls=CheckCommand)
def check_cmd(
    servers: Annotated[list[str] | None, typer.Argument(help="Measure these now (HOST, HOST:PORT); "
                                                        "none: judge what the store holds.")] = None,
    hosts: Annotated[list[str] | None, typer.Option("--host", "-H", help="A server to measure now, as "
                                                    "check_ntp_time's -H (repeatable).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", min=1, max=65535,
                                             help="Port for the servers named without one.")] = None,
    warn_offset: WarnOffsetOpt = None,
    crit_offset: CritOffsetOpt = None,
    warn_jitter: WarnJitterOpt = None,
    crit_jitter: CritJitterOpt = None,
    warn_drift: WarnDriftOpt = None,
    crit_drift: CritDriftOpt = None,
    warn_uncertainty: WarnUncertaintyOpt = None,
    crit_uncertainty: CritUncertaintyOpt = None,
    warn_stratum: WarnStratumOpt = None,
    crit_stratum: CritStratumOpt = None,
    warn_pause: WarnPauseOpt = None,
    crit_pause: CritPauseOpt = None,
    max_age: MaxAgeOpt = None,
    warn_holdover: WarnHoldoverOpt = None,
    crit_holdover: CritHoldoverOpt = None,
    holdover_width: HoldoverWidthOpt = None,
    count: Annotated[int, typer.Option(help="Queries per named server (a burst, as chrony's iburst).")] = 4,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Seconds the whole check may take "
                                           "(each query waits at most 1 s of it); past it: CRITICAL, "
                                           "as check_ntp_time.")] = 10.0,
    unknown_unreachable: Annotated[bool, typer.Option("--unknown-unreachable", "-q",
                                                      help="No reply from any named server is UNKNOWN, "
                                                      "not CRITICAL (check_ntp_time's -q).")] = False,
    require_nts: Annotated[bool, typer.Option("--require-nts", help="Judge only authenticated (NTS, "
                                              "nts://HOST) sources; none, or a plain server named: "
                                              "CRITICAL.")] = False,
    nts_ca: NtsCaOpt = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config (collect's); its [interval] "
                                                "section sets the interval policy, as for `now`.")] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Monitoring-plugin verdict: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line + perfdata.

    Thresholds take the plugin range syntax: 0.01 (above), -0.01:0.01, ~:0.5, 10: (below), @0:0.5
    (inside); offsets, jitter and drift are judged by their absolute value, as check_ntp_time does.
    """
    from timekit.outputs.check import print_verdict, run_check

    verdict = run_check([*(servers or []), *(hosts or [])], db, count=count, timeout_s=timeout,
                        max_age=max_age, config=config, default_port=port,
                        unreachable="unknown" if unknown_unreachable else "critical",
                        warn_holdover=warn_holdover, crit_holdover=crit_holdover,
                        holdover_width=holdover_width, require_nts=require_nts,
                        nts_ca=None if nts_ca is None else str(nts_ca),
                        **_threshold_kwargs(locals()))
    print_verdict(verdict, as_json)
    raise typer.Exit(verdict.exit_code)


# ----------------------------------------------------------------------------- servers
@servers_app.command("list")
def servers_list_cmd(as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """Show what is remembered per server: holds after kiss-o'-death, RTT estimates."""
    with _read_store(db) as store:
        states = list(store.server_states().values())
    if as_json:
        emit_json({"servers": states})
    else:
        from timekit.outputs.render import server_states_table

        _console().print(server_states_table(states))


@servers_app.command("reset")
def servers_reset_cmd(servers: Annotated[list[str], typer.Argument()], as_json: JsonOpt = False,
                      db: DbOpt = None) -> None:
    """Forget a server's kiss-o'-death hold (after its operator allowed us again)."""
    names = [s.name for s in _parse_servers(servers)]
    with _open_store(db) as store:
        states = store.server_states()
        for n in names:
            if n in states:
                states[n].reset()
        store.save_server_states(states[n] for n in names if n in states)
    if as_json:
        emit_json({"reset": names})
    else:
        print("reset: " + ", ".join(names))


@servers_app.command("forget")
def servers_forget_cmd(servers: Annotated[list[str], typer.Argument(help="HOST, HOST:PORT as stored "
                                                                    "(see `timekit servers list`).")],
                       as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """Delete every sample and all state of these servers (a retired server, a typo from an old
    version): `check` and the metrics stop judging them."""
    from timekit.store.database import Store

    names = [s.name for s in _parse_servers(servers)]
    with Store.open(db, create=False) as store:
        deleted = {n: store.forget_server(n) for n in names}
    if as_json:
        emit_json({"forgotten": deleted})
        return
    for n, rows in deleted.items():
        total = sum(rows.values())
        print(f"forgot {n}: {rows['ntp_samples']} samples, {total - rows['ntp_samples']} state rows"
              if total else f"{n}: nothing stored")


# ----------------------------------------------------------------------------- lab
LabDirOpt = Annotated[Path | None, typer.Option("--dir", help="Lab directory (default "
                                                "$TIMEKIT_LAB_DIR or /tmp/timekit-lab-UID).")]


@lab_app.command("start")
def lab_start_cmd(lab_dir: LabDirOpt = None,
                  chrony: Annotated[bool, typer.Option(help="Start chronyd servers.")] = True,
                  scenario: Annotated[str, typer.Option(help="default: servers that all disagree, and "
                                      "every fault; majority: an honest majority that agrees, one "
                                      "jittery, one liar and three faults.")] = "default",
                  fleet: Annotated[int | None, typer.Option("--fleet", min=1, max=60_000, help="Instead: a "
                                   "fleet of N simulated nodes' NTP endpoints (one process), a few skewed; "
                                   "writes NODES.txt for `fleet sweep --nodes`.")] = None,
                  stepped: Annotated[int, typer.Option("--stepped", min=0, help="Fleet nodes that step by "
                                     "300 ms 5 s after start.")] = 0,
                  drifting: Annotated[int, typer.Option("--drifting", min=0, help="Fleet nodes that run "
                                      "20,000 ppm fast or slow.")] = 0,
                  recovering: Annotated[int, typer.Option("--recovering", min=0, help="Fleet nodes that step "
                                        "at 5 s and come back at 15 s.")] = 0,
                  cluster: Annotated[int | None, typer.Option("--cluster", min=3, max=50, help="Instead: a "
                                     "cluster of N nodes, each a chronyd on its own clock serving its peers, "
                                     "with a config and a `timekit` wrapper on that clock per node, and 3 "
                                     "references.")] = None,
                  skewed: Annotated[int, typer.Option("--skewed", min=0, help="Cluster nodes whose clock is "
                                      "--skew off.")] = 1,
                  skew: Annotated[float, typer.Option("--skew", min=-1000.0, max=1000.0, help="How far the "
                                  "skewed cluster nodes' clocks are off, s.")] = 0.8,
                  nts: Annotated[bool, typer.Option("--nts", help="Also a chronyd serving NTS (RFC 8915), "
                                 "its certificate from a CA made now (nts-ca/ca.pem in the lab directory: "
                                 "give it to --nts-ca).")] = False,
                  as_json: JsonOpt = False) -> None:
    """Start chronyd servers (known offset and drift) and the fault-injection server, a fleet, or a
    cluster."""
    from timekit.errors import UsageError
    from timekit.lab.manager import SCENARIOS, start_lab

    if cluster is not None:
        _lab_start_cluster(lab_dir, cluster, skewed, skew, as_json)
        return

    if fleet is not None:
        from timekit.lab.fleet import FleetPlan, fleet_ports, write_nodes_file

        try:
            plan = FleetPlan(fleet, stepped=stepped, drifting=drifting, recovering=recovering)
        except ValueError as e:
            raise UsageError(f"--fleet: {e}") from None
        lab = start_lab(lab_dir, chrony=None, good_ports=tuple(fleet_ports(plan)), fault_kinds=())
        nodes_file = lab.directory / "nodes.txt"
        write_nodes_file(nodes_file, [(s.name, s.address) for s in lab.servers])
        if as_json:
            emit_json({"lab": str(lab.directory), "nodes": len(lab.servers), "nodes_file": str(nodes_file),
                       "stepped": stepped, "drifting": drifting, "recovering": recovering})
        else:
            print(f"fleet lab: {len(lab.servers)} nodes ({stepped} stepped, {drifting} drifting, "
                  f"{recovering} recovering) in {lab.directory}; nodes file {nodes_file}")
        return
    if scenario not in SCENARIOS:
        raise UsageError(f"--scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    servers, ports, faults = SCENARIOS[scenario]
    from timekit.lab.manager import NTS_SPEC

    lab = start_lab(lab_dir, chrony=servers if chrony else None, good_ports=ports, fault_kinds=faults,
                    nts=NTS_SPEC if nts else None)
    _lab_status(lab, as_json)
    if nts and not as_json:
        from timekit.lab.manager import NTS_CA_FILE

        print(f"NTS: the lab's CA is {lab.directory / NTS_CA_FILE} (sample ntp --nts-ca FILE nts://...)")


def _lab_start_cluster(lab_dir: Path | None, n: int, skewed: int, skew_s: float, as_json: bool) -> None:
    """`lab start --cluster N`: references at true time and N node chronyds at their skews; per node a
    collect config (its peers, the references) and a wrapper running timekit on its clock."""
    from timekit.errors import UsageError
    from timekit.lab.cluster import (
        REFERENCES,
        cluster_skews,
        node_env,
        write_cluster_config,
        write_node_wrapper,
    )
    from timekit.lab.manager import ChronySpec, start_lab

    try:
        skews = cluster_skews(n, skewed, skew_s)
    except ValueError as e:
        raise UsageError(f"--cluster: {e}") from None
    refs = tuple(ChronySpec(f"ref-{i + 1}", 0.0, 0.0) for i in range(REFERENCES))
    lab = start_lab(lab_dir, chrony=(*refs, *(ChronySpec(k, v, 0.0) for k, v in skews.items())),
                    good_ports=(), fault_kinds=())
    by_name = {s.name: s for s in lab.servers}
    nodes = []
    for name, node_skew in skews.items():
        d = lab.directory / "nodes" / name
        peers = [f"{p} {by_name[p].address}" for p in skews if p != name]
        config = write_cluster_config(d / "timekit.toml", peers, [by_name[r.name].address for r in refs])
        wrapper = write_node_wrapper(d / "timekit", name, node_env(node_skew, d))
        nodes.append({"node": name, "skew_s": node_skew, "address": by_name[name].address,
                      "config": str(config), "timekit": str(wrapper), "db": str(d / "timekit.db")})
    if as_json:
        emit_json({"lab": str(lab.directory), "references": [by_name[r.name].address for r in refs],
                   "nodes": nodes})
        return
    print(f"cluster lab: {n} nodes ({skewed} skewed by {skew_s:+g} s) and {REFERENCES} references in "
          f"{lab.directory}")
    for node in nodes:
        print(f"  {node['node']}: clock {node['skew_s']:+.6f} s, chronyd {node['address']}; run "
              f"{node['timekit']} collect --config {node['config']} --db {node['db']}")


@lab_app.command("status")
def lab_status_cmd(lab_dir: LabDirOpt = None, as_json: JsonOpt = False) -> None:
    """List lab servers with their address, kind, and true offset right now."""
    from timekit.lab.manager import Lab, default_lab_dir

    _lab_status(Lab.load(lab_dir or default_lab_dir()), as_json)


@lab_app.command("stop")
def lab_stop_cmd(lab_dir: LabDirOpt = None, as_json: JsonOpt = False) -> None:
    """Stop every lab process."""
    from timekit.lab.manager import Lab, default_lab_dir

    lab = Lab.load(lab_dir or default_lab_dir())
    lab.stop()
    if as_json:
        emit_json({"stopped": len(lab.servers)})
    else:
        print(f"lab stopped ({len(lab.servers)} servers)")


@lab_app.command("compare")
def lab_compare_cmd(lab_dir: LabDirOpt = None, as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """Compare stored samples of lab servers with their ground truth (offset error per server)."""
    from timekit.lab.manager import Lab, default_lab_dir
    from timekit.lab.truth import compare_with_truth

    lab = Lab.load(lab_dir or default_lab_dir())
    with _read_store(db) as store:
        rows = compare_with_truth(lab, store)
    if as_json:
        emit_json({"servers": rows})
    else:
        from timekit.outputs.render import compare_table

        _console().print(compare_table(rows))


def _lab_status(lab: Any, as_json: bool) -> None:
    from timekit.lab.truth import lab_status_rows

    rows = lab_status_rows(lab)
    if as_json:
        emit_json({"directory": str(lab.directory), "servers": rows})
    else:
        from timekit.outputs.render import lab_table

        _console().print(lab_table(rows, lab.directory))


_STOPPED_BY: list[int] = []  # the stop signal received, if any (Ctrl-C paths re-raise plain interrupts)


def _terminated(signum: int, _frame: object) -> None:
    """SIGTERM (systemd's stop, `kill`) or SIGHUP (the terminal went away): stop as Ctrl-C does,
    keeping what was collected; `main` then dies of the signal so a service manager sees a clean stop."""
    _STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, map errors to one line and an exit code."""
    import signal

    handled = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for s, before in handled.items():
        if before == signal.SIG_DFL:  # an ignored SIGHUP (nohup) stays ignored
            signal.signal(s, _terminated)
    _STOPPED_BY.clear()
    try:
        try:
            rv = _main(argv)
        except KeyboardInterrupt:  # a stop signal while an error was being reported
            rv = 130
        return _die_of(_STOPPED_BY[0]) if _STOPPED_BY else rv
    finally:
        for s, before in handled.items():
            if signal.getsignal(s) is _terminated:
                signal.signal(s, before)


def _die_of(signum: int) -> int:
    """Report the stop signal, then end by it: 128+n to a shell, "killed by SIGTERM" to systemd,
    which counts that as a clean stop. Returns 128+n only where the signal turns out not fatal."""
    import signal

    print(f"timekit: stopped by {signal.Signals(signum).name}; samples taken so far are stored",
          file=sys.stderr)
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


def _main(argv: list[str] | None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="timekit")
    except TimekitError as exc:
        print(f"timekit: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else str(exc), file=sys.stderr)
        return 2
    except click.ClickException as exc:
        print(f"timekit: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        rv = 130
    except BrokenPipeError:
        return 1
    except OSError as exc:  # disk full, read-only file system, ...: one line, no traceback
        from timekit.errors import os_error_words

        print(f"timekit: error: {os_error_words(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line (TIMEKIT_DEBUG=1 shows the traceback)
        if os.environ.get("TIMEKIT_DEBUG"):
            raise
        print(f"timekit: internal error: {type(exc).__name__}: {exc} "
              "(set TIMEKIT_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
    if rv == 130 and not _STOPPED_BY:  # typer maps KeyboardInterrupt to Exit(130)
        print("timekit: interrupted; samples taken so far are stored", file=sys.stderr)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
