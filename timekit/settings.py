"""Settings resolved once at the edge: the store's path and the one `Policy` every answer applies.

Flags beat the config file, the config file beats the defaults; a bad value is a UsageError
naming it (exit 2, or UNKNOWN for `timekit check`). Nothing below the CLI reads the
environment or a config file for these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timekit.errors import UsageError

if TYPE_CHECKING:  # the analysis stack (numpy) is imported only by the commands that assess
    from timekit.analysis.assessment import Policy
    from timekit.analysis.interval import IntervalPolicy
    from timekit.analysis.skew import SkewPolicy
    from timekit.analysis.thresholds import Thresholds


def default_db_path() -> Path:
    """$TIMEKIT_DB, else $XDG_DATA_HOME/timekit/timekit.db, else ~/.local/share/timekit/timekit.db.

    The same rule applies to root (/root/.local/share/timekit/timekit.db).
    """
    env = os.environ.get("TIMEKIT_DB")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "timekit" / "timekit.db"


def db_path(db: Path | str | None) -> Path:
    """The store a command uses: `--db` when given, else the default."""
    return Path(db) if db is not None else default_db_path()


def config_section(config: Path | None, section: str) -> dict[str, Any]:
    """One validated section of a TOML config ({} without a config)."""
    if config is None:
        return {}
    from timekit.config import load_config

    return dict(getattr(load_config(config), section))


def _given(flags: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def interval_policy(config: Path | None = None, **flags: Any) -> IntervalPolicy:
    """The interval policy: `flags` (None: not given) over the config's [interval] over the defaults."""
    from timekit.analysis.interval import IntervalPolicy

    try:
        return IntervalPolicy(**{**config_section(config, "interval"), **_given(flags)})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def skew_policy(config: Path | None = None, **flags: Any) -> SkewPolicy:
    """The skew policy: `flags` over the config's [skew] (its `hook` is not a policy) over the defaults.
    A `max_offset_s` alone pulls the default warning down to it."""
    from timekit.analysis.skew import SkewPolicy

    kw = {k: v for k, v in config_section(config, "skew").items() if k != "hook"}
    kw.update(_given(flags))
    if "max_offset_s" in kw and "warn_offset_s" not in kw:
        kw["warn_offset_s"] = min(SkewPolicy.warn_offset_s, kw["max_offset_s"])
    try:
        return SkewPolicy(**kw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def thresholds(max_age: str | None = None, warn_holdover: str | None = None, crit_holdover: str | None = None,
               **flags: float | str | None) -> Thresholds:
    """`timekit check`/`rules` thresholds from their flags (`max_age`, `warn_holdover`, `crit_holdover`
    duration texts: 900, 15m, 2h; a flag a number or a plugin range text such as `-0.001:0.001`, `~:5`,
    `@0:0.5`)."""
    from dataclasses import replace

    from timekit.analysis.thresholds import thresholds_from_flags
    from timekit.units import parse_duration_s

    try:
        given: dict[str, float | str | None] = dict(flags)
        durations: dict[str, float] = {}
        for flag, field, text in (("--max-age", "max_age_s", max_age),
                                  ("--warn-holdover", "warn_holdover_s", warn_holdover),
                                  ("--crit-holdover", "crit_holdover_s", crit_holdover)):
            if text is not None:
                try:
                    durations[field] = parse_duration_s(text)
                except ValueError as exc:
                    raise ValueError(f"{flag}: {exc}") from None
        if "max_age_s" in durations:
            given["max_age_s"] = durations.pop("max_age_s")
        t = thresholds_from_flags(**given)
        return replace(t, warn_holdover_s=durations.get("warn_holdover_s"),
                       crit_holdover_s=durations.get("crit_holdover_s"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def policy(config: Path | None = None, *, interval: Mapping[str, Any] | None = None,
           skew: Mapping[str, Any] | None = None, thresholds: Thresholds | None = None) -> Policy:
    """The one Policy of a command: its interval and skew flags over the config over the defaults."""
    from timekit.analysis.assessment import Policy

    return Policy(interval=interval_policy(config, **dict(interval or {})),
                  skew=skew_policy(config, **dict(skew or {})),
                  thresholds=thresholds if thresholds is not None else Policy().thresholds)
