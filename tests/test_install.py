"""The system-wide install, for real: `scripts/install` into a temporary tree with a user of its
own, every installed systemd unit through `systemd-analyze verify`, the README's cron lines run
under cron's own environment (`env -i PATH=/usr/bin:/bin`) as the installed user against the lab,
readers as another uid in and out of the group, and `scripts/uninstall` removing it all again.
"""

from __future__ import annotations

import configparser
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from timekit.lab.manager import Lab

ROOT = Path(__file__).resolve().parents[1]
UNITS = ("timekit-collect.service", "timekit-collect.timer", "timekit-check.service", "timekit-check.timer",
         "timekit-exporter.service", "timekit-daemon.service")
NOBODY = 65534
CRON_PATH = "/usr/bin:/bin"  # cron's own PATH

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "setpriv", "systemd-analyze")),
    reason="needs root, useradd, setpriv and systemd-analyze (scripts/setup installs them)")


@dataclass
class Installed:
    top: Path
    user: str
    options: list[str]

    @property
    def bindir(self) -> Path:
        return self.top / "bin"

    @property
    def prefix(self) -> Path:
        return self.top / "opt"

    @property
    def statedir(self) -> Path:
        return self.top / "state"

    @property
    def etc(self) -> Path:
        return self.top / "etc" / "timekit.toml"

    @property
    def unitdir(self) -> Path:
        return self.top / "units"

    @property
    def db(self) -> Path:
        return self.statedir / "timekit.db"


def _run(argv: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    top = Path(tempfile.mkdtemp(prefix="timekit-install-", dir="/var/tmp"))
    top.chmod(0o755)
    user = "tk" + secrets.token_hex(4)
    inst = Installed(top, user, [])
    inst.options = ["--prefix", str(inst.prefix), "--bindir", str(inst.bindir), "--statedir",
                    str(inst.statedir), "--etc", str(inst.etc), "--unitdir", str(inst.unitdir),
                    "--user", user]
    try:
        proc = _run([str(ROOT / "scripts" / "install"), *inst.options], timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        yield inst
    finally:
        _run([str(ROOT / "scripts" / "uninstall"), *inst.options, "--purge"])
        shutil.rmtree(top, ignore_errors=True)


def as_user(inst: Installed, *argv: str, uid: int | None = None,
            groups: str = "") -> subprocess.CompletedProcess:
    """`argv` under cron's environment as the installed user (or `uid`, with supplementary `groups`)."""
    who = ([f"--reuid={inst.user}", f"--regid={inst.user}", "--init-groups"] if uid is None else
           [f"--reuid={uid}", f"--regid={uid}"] + ([f"--groups={groups}"] if groups else ["--clear-groups"]))
    return _run(["env", "-i", f"PATH={CRON_PATH}", "setpriv", *who, *argv], cwd="/")


def test_installed_layout(installed: Installed) -> None:
    """The command on the PATH cron and systemd use, the user without a login, the store directory
    the user's own (setgid, group-readable), and the example config."""
    link = installed.bindir / "timekit"
    assert link.is_symlink() and os.readlink(link) == str(installed.prefix / "bin" / "timekit")
    proc = _run(["env", "-i", f"PATH={CRON_PATH}", str(link), "--version"])
    from importlib.metadata import version

    assert (proc.returncode, proc.stdout) == (0, f"timekit {version('timekit')}\n"), proc.stderr
    pw = pwd.getpwnam(installed.user)
    assert pw.pw_shell == "/usr/sbin/nologin" and grp.getgrgid(pw.pw_gid).gr_name == installed.user
    st = installed.statedir.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (pw.pw_uid, pw.pw_gid, 0o2755)
    assert "[ntp]" in installed.etc.read_text() and installed.etc.stat().st_mode & 0o777 == 0o644


def test_every_unit_verifies_and_is_hardened(installed: Installed) -> None:
    paths = [installed.unitdir / u for u in UNITS]
    assert sorted(p.name for p in installed.unitdir.iterdir()) == sorted(UNITS)
    proc = _run(["systemd-analyze", "verify", *map(str, paths)], timeout=60)
    # verify exits 0 on unknown keys too, with a warning: no output at all is the bar
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc.stderr
    for path in paths:
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(path.read_text())
        text = path.read_text()
        assert not re.search(r"@[A-Z]+@", text), path  # every placeholder filled
        if path.suffix == ".timer":
            assert unit["Install"]["WantedBy"] == "timers.target"
            continue
        svc = unit["Service"]
        assert (svc["User"], svc["Group"]) == (installed.user, installed.user), path
        assert svc["ExecStart"].startswith(f"{installed.bindir}/timekit "), path
        assert f"--db {installed.db}" in svc["ExecStart"]
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                           ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("CapabilityBoundingSet", "")):
            assert svc.get(key) == value, (path.name, key)
        writers = ("timekit-collect.service", "timekit-daemon.service")  # the rest only read
        assert svc.get("ReadWritePaths") == (str(installed.statedir) if path.name in writers else None), path


def _cron_lines() -> dict[str, str]:
    """The README's /etc/cron.d lines for collect and check (the command part, after the user)."""
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines()
             if re.match(r"^[*/0-9]+ \* \* \* \* timekit /usr/local/bin/timekit", ln)
             or re.match(r"^[*/0-9]+ \* \* \* \* timekit out=\$\(/usr/local/bin/timekit check", ln)]
    out = {}
    for ln in lines:
        command = ln.split(" ", 6)[6]
        if "collect" in command and "export" not in command:
            out["collect"] = command
        elif "timekit check" in command:
            out["check"] = command
    assert set(out) == {"collect", "check"}, lines
    return out


def test_readme_cron_lines_run_under_crons_environment_and_print_nothing(installed: Installed,
                                                                         lab: Lab) -> None:
    """Cron mails what a job prints: on a good run both lines print nothing, exit 0, and the store
    (the installed user's) holds the samples."""
    near = lab.server("chrony-near").address
    cfg = installed.top / "cron.toml"
    cfg.write_text(f'[ntp]\nservers = ["{near}"]\ncount = 4\nmin_poll_s = 15\n'
                   "[clocks]\nduration_s = 0.2\n[pauses]\nenabled = false\n[run]\nbudget_s = 50\n")
    cfg.chmod(0o644)
    lines = {k: v.replace("/usr/local/bin", str(installed.bindir)).replace("/etc/timekit.toml", str(cfg))
             .replace("/var/lib/timekit", str(installed.statedir)) for k, v in _cron_lines().items()}
    for name in ("collect", "check"):
        proc = as_user(installed, "/bin/sh", "-c", lines[name])
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), (name, lines[name])
    # the store is the user's and its group's, not the world's
    proc = _run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cat",
                 str(installed.db)])
    assert proc.returncode != 0 and "Permission denied" in proc.stderr
    proc = _run([str(installed.bindir / "timekit"), "check", "--json", "--db", str(installed.db)])
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok" and doc["metrics"]["servers_usable"] == 1, doc["summary"]
    owner = pwd.getpwnam(installed.user).pw_uid
    assert {p.stat().st_uid for p in installed.statedir.iterdir()} == {owner}
    assert installed.db.stat().st_mode & 0o777 == 0o640  # under cron's umask 022 too
    assert (installed.statedir / "timekit.db.clock").stat().st_mode & 0o777 == 0o644
    # every user's IntervalClock reads the published state, without access to the store
    code = ("from timekit import IntervalClock\n"
            f"c = IntervalClock(db={str(installed.db)!r}); r = c.now(); print(c.source, r.status)")
    proc = as_user(installed, str(installed.prefix / "bin" / "python"), "-c", code, uid=NOBODY)
    assert proc.returncode == 0, proc.stderr
    source, status = proc.stdout.split()
    assert (source, status != "unknown") == ("published", True), proc.stdout


def test_a_monitoring_user_in_the_group_reads_the_store(installed: Installed, lab: Lab) -> None:
    """NRPE's and Prometheus's users: in the group, check/now/export/analyze work read-only; out of
    it, check says it cannot read the store (UNKNOWN), never that it is corrupt."""
    if not installed.db.exists():
        pytest.skip("needs the store the cron test wrote")
    tk = str(installed.bindir / "timekit")
    gid = str(grp.getgrnam(installed.user).gr_gid)
    out = installed.top / "out"
    out.mkdir(exist_ok=True)
    out.chmod(0o1777)
    before = sorted(p.name for p in installed.statedir.iterdir())
    proc = as_user(installed, tk, "check", "--db", str(installed.db), uid=NOBODY, groups=gid)
    assert proc.returncode == 0 and proc.stdout.startswith("TIMEKIT OK - "), proc.stdout + proc.stderr
    proc = as_user(installed, tk, "now", "--json", "--db", str(installed.db), uid=NOBODY, groups=gid)
    assert json.loads(proc.stdout)["earliest_ns"] is not None, proc.stderr
    for argv in (["analyze", "drift", "--json"], ["export", "prometheus", "--out", str(out / "t.prom")]):
        proc = as_user(installed, tk, *argv, "--db", str(installed.db), uid=NOBODY, groups=gid)
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
    assert "timekit_store_up 1" in (out / "t.prom").read_text()
    assert sorted(p.name for p in installed.statedir.iterdir()) == before  # the readers wrote nothing
    proc = as_user(installed, tk, "check", "--db", str(installed.db), uid=NOBODY)
    assert proc.returncode == 3, proc.stdout
    assert proc.stdout == f"TIMEKIT UNKNOWN - cannot read database {installed.db}: permission denied\n"
    assert "corrupt" not in proc.stdout and "readonly" not in proc.stdout


def test_the_installed_command_runs_a_lab_from_a_checkout(installed: Installed) -> None:
    """The installed (not editable) timekit started from the repository directory still runs its own
    package in every process it starts: the lab's fault server once imported the checkout's
    `timekit/` (which lacks the mapped `timekit.collectors`) and died."""
    tk = str(installed.bindir / "timekit")
    lab_dir = installed.top / "lab"
    proc = _run([tk, "lab", "start", "--scenario", "majority", "--dir", str(lab_dir), "--json"], cwd=ROOT)
    try:
        assert proc.returncode == 0, proc.stderr
        status = json.loads(_run([tk, "lab", "status", "--dir", str(lab_dir), "--json"], cwd=ROOT).stdout)
        assert {s["name"] for s in status["servers"] if s["alive"]} >= {"honest-a", "liar", "jittery"}
    finally:
        _run([tk, "lab", "stop", "--dir", str(lab_dir)], cwd=ROOT)


def test_uninstall_removes_it_all(installed: Installed) -> None:
    """Without --purge the store and the config stay; with it, they go too; the user, the command,
    the venv and the units go either way."""
    proc = _run([str(ROOT / "scripts" / "uninstall"), *installed.options])
    assert proc.returncode == 0, proc.stderr
    assert installed.statedir.exists() and installed.etc.exists()
    assert not (installed.bindir / "timekit").exists() and not installed.prefix.exists()
    assert list(installed.unitdir.iterdir()) == []
    assert _run(["id", "-u", installed.user]).returncode != 0
    proc = _run([str(ROOT / "scripts" / "uninstall"), *installed.options, "--purge"])
    assert proc.returncode == 0 and not installed.statedir.exists() and not installed.etc.exists()
