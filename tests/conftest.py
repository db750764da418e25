"""Shared fixtures: one reference lab per test session (real chronyd + the fault server)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.server_policy import ServerState
from timekit.lab.manager import Lab, start_lab
from timekit.samples import NtpSample

# Fixtures that start lab servers (chronyd under libfaketime): a test using one, directly or through
# another fixture, carries the `lab` marker, so `pytest -m "not lab"` runs without chronyd. Tests that
# start chronyd themselves are marked by hand.
LAB_FIXTURES = frozenset({"lab", "chrony_pair"})
_FIGURES: list[tuple[str, str]] = []


def record_figure(topic: str, text: str) -> None:
    """A measured figure (how many checks a run made, ...) printed in the run's summary: counts that
    depend on the machine are reported, not asserted."""
    _FIGURES.append((topic, text))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("measured figures")
        for topic, text in _FIGURES:
            terminalreporter.write_line(f"{topic}: {text}")


def require_lab(missing: list[str]) -> None:
    """Skip a lab test on a machine without chronyd/libfaketime/gcc, but fail in CI (which installs
    them): a lab test that silently skips there would prove nothing."""
    if missing:
        if os.environ.get("CI"):
            pytest.fail("lab prerequisites missing in CI: " + "; ".join(missing))
        pytest.skip("lab prerequisites missing: " + "; ".join(missing))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The default lab (3 chronyd servers, good fault ports, one port per fault kind)."""
    from timekit.lab.chrony import lab_prerequisites

    require_lab(lab_prerequisites())
    the_lab = start_lab(tmp_path_factory.mktemp("lab"), detach=False)
    yield the_lab
    the_lab.stop()


def sample(addresses: list[str], count: int = 1, interval_s: float = 0.05, timeout_s: float = 0.5,
           states: dict[str, ServerState] | None = None) -> list[NtpSample]:
    """Sample servers concurrently through the real client; returns every attempt."""
    out: list[NtpSample] = []
    asyncio.run(sample_servers([parse_server(a) for a in addresses],
                               QueryPlan(count=count, interval_s=interval_s, timeout_s=timeout_s),
                               {} if states is None else states,
                               lambda s, _st: out.append(s)))
    return out


def run_cli(*args: str, db: Path | None = None, timeout: float = 60,
            **kw: object) -> subprocess.CompletedProcess:
    """Run the real `timekit` console entry point in a subprocess."""
    cmd = [sys.executable, "-m", "timekit.cli", *args]
    if db is not None:
        cmd += ["--db", str(db)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
