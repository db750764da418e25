"""From the store to analysis inputs: per-server numpy series of usable samples.

The I/O edge of the analysis layer: `analysis/` never reads the store, this module does,
and hands it arrays (instants int64 ns, offsets/delays float s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from timekit.store import Store

SERIES_COLUMNS = ("server", "t_local_ns", "boottime_ns", "boot_id", "offset_s", "delay_s",
                  "root_delay_s", "root_dispersion_s", "leap", "stratum")


@dataclass(frozen=True)
class Series:
    """One server's ok samples, oldest first. `boottime_ns` is -1 where unknown (older rows)."""

    server: str
    t_local_ns: np.ndarray  # int64
    boottime_ns: np.ndarray  # int64, -1 = not recorded
    boot_id: np.ndarray  # object (str or None)
    offset_s: np.ndarray
    delay_s: np.ndarray
    root_distance_s: np.ndarray  # delay/2 + root delay/2 + root dispersion
    leap: np.ndarray  # int8

    def __len__(self) -> int:
        return len(self.t_local_ns)

    def select(self, mask: np.ndarray) -> Series:
        """The samples where `mask` is true."""
        return Series(self.server, self.t_local_ns[mask], self.boottime_ns[mask], self.boot_id[mask],
                      self.offset_s[mask], self.delay_s[mask], self.root_distance_s[mask], self.leap[mask])


def load_series(store: Store, *, server: str | None = None, since_ns: int | None = None,
                last_per_server: int | None = None) -> dict[str, Series]:
    """Usable samples per server (sorted by name), from one query."""
    rows = store.ok_rows(SERIES_COLUMNS, server=server, since_ns=since_ns, last_per_server=last_per_server)
    out: dict[str, Series] = {}
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            out[rows[start][0]] = _series(rows[start:i])
            start = i
    return out


def _series(rows: list[tuple[Any, ...]]) -> Series:
    cols = list(zip(*rows, strict=True))

    def floats(j: int) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in cols[j]], dtype=np.float64)

    delay = floats(5)
    # delay/2 + root delay/2 + root dispersion; an unknown part makes the sample vouch for nothing
    root_distance = delay / 2 + floats(6) / 2 + floats(7)
    root_distance[np.isnan(root_distance)] = np.inf
    return Series(
        server=rows[0][0],
        t_local_ns=np.array(cols[1], dtype=np.int64),
        boottime_ns=np.array([-1 if v is None else v for v in cols[2]], dtype=np.int64),
        boot_id=np.array(cols[3], dtype=object),
        offset_s=floats(4),
        delay_s=delay,
        root_distance_s=root_distance,
        leap=np.array([0 if v is None else v for v in cols[8]], dtype=np.int8),
    )
