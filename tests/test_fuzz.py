"""The fuzz targets kept in the project (`python -m fuzz reply|address --runs N`): a short run of each
in the suite (the long runs are in the closing notes), and proof that the reply target can fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
atheris = pytest.importorskip("atheris", reason="atheris (the fuzzer) is in the test extra")


@pytest.mark.parametrize("target, runs", [("reply", 30_000), ("address", 100_000)])
def test_a_short_fuzz_run_finds_nothing(target: str, runs: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "fuzz", target, "--runs", str(runs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and f"Done {runs} runs" in proc.stderr, proc.stderr[-3000:]


def test_the_reply_target_catches_a_validator_that_accepts_too_much(monkeypatch: pytest.MonkeyPatch) -> None:
    """Held to the reference, a validator that accepts every authentic-looking reply (no
    unsynchronized, root distance or timestamp checks) is caught within a few hundred inputs."""
    from fuzz import targets
    from timekit.collectors.ntp_packet import validate_reply

    def lax(data: bytes, **kw: int) -> object:
        got = validate_reply(data, **kw)
        if got.error in ("unsynchronized", "bad_root_distance", "invalid"):
            return validate_reply(data[:1] + bytes([1]) + data[2:4] + bytes(8) + data[12:], **kw)
        return got

    monkeypatch.setattr(targets, "validate_reply", lax)
    caught = 0
    for _ in range(2000):
        try:
            targets.check_reply(os.urandom(160))
        except targets.Disagreement:
            caught += 1
    assert caught > 0


@pytest.mark.parametrize("text", ["6\n:6", "time.example.org\n:123", "a\tb:123"])
def test_addresses_the_fuzzer_found(text: str) -> None:
    from timekit.address import parse_server
    from timekit.errors import UsageError

    with pytest.raises(UsageError, match="malformed host name"):
        parse_server(text)
