"""The architecture, enforced: which part of timekit may import which, read from the installed package.

Layers, lowest first; a module imports only its own layer and lower ones (the three at the top
of the stack, outputs, the library and the lab, not each other), at module level or inside a
function alike:

    core        timekit.errors, units, vocabulary, samples, daemon_samples, address, atomic_files, lab_names:
                words and utilities
    analysis    timekit.analysis: the pure rules (no clock, no I/O)
    collectors  timekit.collectors: touch the world (clocks, kernel, sockets), measure only
    settings    timekit.config, timekit.settings: resolved once at the edge
    store       timekit.store: the database, the evidence reader, the files beside it
    pipeline    timekit.pipeline: sampling runs, the one assessment, publishing, skew persistence
    outputs | clock | lab   renderings of the assessment; the library (IntervalClock, Lease); the lab
    cli         timekit.cli

The package is read as installed (`collectors/` and `analysis/` are mapped into `timekit.` by the
package-dir setting, which tools reading imports as text do not see).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest

CORE = {"timekit.errors", "timekit.units", "timekit.vocabulary", "timekit.samples", "timekit.address",
        "timekit.atomic_files", "timekit.lab_names", "timekit.daemon_samples"}
RANK = {"core": 0, "analysis": 1, "collectors": 2, "settings": 3, "store": 4, "pipeline": 5,
        "outputs": 6, "clock": 6, "lab": 6, "cli": 7}
ANALYSIS_MAY_NOT_IMPORT = {"time", "os", "sqlite3", "socket", "subprocess", "asyncio", "select", "fcntl",
                           "mmap", "pathlib"}


def layer(module: str) -> str | None:
    """The layer of a timekit module (None: the package's own __init__, which exports the library)."""
    if module == "timekit":
        return None
    if module in CORE:
        return "core"
    part = module.split(".")[1]
    if part in ("config", "settings"):
        return "settings"
    if part in RANK:
        return part
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layout.py and the README")


MAPPED = ("timekit.analysis", "timekit.collectors")  # package-dir mapped: not below timekit/ on disk


def installed_modules() -> dict[str, Path]:
    """Every module of the installed timekit package, by name, with its source file (each package's
    own search locations, so the mapped packages are found where they are installed from)."""
    out: dict[str, Path] = {}
    todo = ["timekit", *MAPPED]
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        if spec.origin.endswith(".py"):  # a compiled extension (the C hot path) imports nothing of ours
            out[name] = Path(spec.origin)
        if spec.submodule_search_locations:
            todo += [f"{name}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations)
                     if f"{name}.{m.name}" not in out]
    return out


def imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (module level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from timekit import settings`
    return found


def target(name: str, modules: dict[str, Path]) -> str:
    """The timekit module an import names (`timekit.store.Store` -> timekit.store)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


MODULES = installed_modules()


def test_the_installed_package_maps_collectors_and_analysis() -> None:
    assert MODULES["timekit.collectors.clocks"].parent.name == "collectors"
    assert MODULES["timekit.analysis.assessment"].parent.name == "analysis"
    assert {"timekit.store", "timekit.pipeline", "timekit.outputs", "timekit.clock"} <= set(MODULES)


def violations(module: str, names: set[str]) -> list[str]:
    """What `module` may not import of `names`, each with why."""
    mine = layer(module)
    bad: list[str] = []
    if mine is None:
        return bad
    for name in sorted(names):
        if not name.startswith("timekit"):
            if mine == "analysis" and name.split(".")[0] in ANALYSIS_MAY_NOT_IMPORT:
                bad.append(f"{name} (analysis/ stays pure: no clock, no I/O)")
            continue
        theirs = layer(target(name, MODULES))
        if theirs is None:
            bad.append(f"{name} (the package's __init__ is for users, not for timekit's own modules)")
        elif RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
            bad.append(f"{name} ({theirs} is not below {mine})")
    return bad


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module: str) -> None:
    bad = violations(module, imports(MODULES[module]))
    assert not bad, f"{module} imports: " + "; ".join(bad)


def test_a_layer_violation_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: analysis reading the clock or the store, the store calling the
    pipeline, one output importing another, are each refused."""
    src = tmp_path / "bad.py"
    src.write_text("import time\nfrom timekit.store.database import Store\n", encoding="utf-8")
    assert violations("timekit.analysis.drift", imports(src)) == [
        "time (analysis/ stays pure: no clock, no I/O)",
        "timekit.store.database.Store (store is not below analysis)"]
    assert violations("timekit.store.evidence", {"timekit.pipeline.assess.assess_store"})
    assert violations("timekit.outputs.check", {"timekit.clock.intervalclock"})
    assert not violations("timekit.outputs.check", {"timekit.pipeline.assess.assess_store", "json"})


def test_the_readme_faults_table_is_the_tests_own() -> None:
    """README's FAULTS coverage table is what `scripts/faults-coverage` reads from the tests now."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "scripts" / "faults-coverage"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "README's FAULTS table is stale: run scripts/faults-coverage and paste it"
