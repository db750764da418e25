"""Types as a user's mypy sees them: timekit installed from its wheel is clean under mypy (the public
API under --strict), and the README's Lease example type-checks as written. `scripts/test` checks the
editable install the same way before the suite (both through `scripts/typecheck`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPECHECK = ROOT / "scripts" / "typecheck"


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and unpacked into a directory of its own (no dependencies)."""
    wheels, site = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip"]
    proc = subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = wheels.glob("timekit-*.whl")
    proc = subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return site


def typecheck(cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TYPECHECK), sys.executable], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MYPY_CACHE_DIR": str(cache), **env})


def test_the_wheel_is_typed_and_clean(wheel_site: Path, tmp_path: Path) -> None:
    pkg = wheel_site / "timekit"
    assert (pkg / "py.typed").is_file()  # PEP 561: a user's mypy reads the installed sources
    assert (pkg / "collectors" / "ntp_client.py").is_file() and (pkg / "analysis" / "drift.py").is_file()
    proc = typecheck(tmp_path / "cache", MYPYPATH=str(wheel_site))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # three clean passes: the package, the strict public API, the example
    assert [line.split(" in ")[0] for line in proc.stdout.splitlines()] == ["Success: no issues found"] * 3


def test_a_type_error_in_the_readme_example_is_caught(tmp_path: Path) -> None:
    """The check can fail: the README with a wrongly typed use of the API does not pass."""
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    marker = 'lease = Lease(clock, 10.0, token=FencingTokens(db).next("orders"))\n'
    assert marker in text
    readme.write_text(text.replace(marker, marker + 'next_token: int = lease.token + 1\n'))
    fake_root = tmp_path / "root"
    (fake_root / "scripts").mkdir(parents=True)
    (fake_root / "scripts" / "typecheck").symlink_to(TYPECHECK)
    (fake_root / "README.md").symlink_to(readme)
    for name in ("pyproject.toml", "timekit", "collectors", "analysis"):  # the checkout, but that README
        (fake_root / name).symlink_to(ROOT / name)
    proc = subprocess.run([str(fake_root / "scripts" / "typecheck"), sys.executable], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "MYPY_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'Unsupported operand types for + ("None" and "int")' in proc.stdout, proc.stdout
