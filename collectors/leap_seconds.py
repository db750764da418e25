"""The leap seconds the system knows (tzdata's `leap-seconds.list`), as the UTC instants they end at.

Read once per process at the I/O edge and handed to the analysis (`analysis.leap_events`), which
never reads files. The list's lines are `NTP_SECONDS TAI-UTC # date`: the instant (NTP era 0) from
which the new TAI − UTC offset holds, i.e. the end of the leap second; the first line (10 s, 1972)
starts the table and is no leap. A missing or unreadable list is no error: leaps announced by the
references (leap indicator) are still seen.
"""

from __future__ import annotations

import functools
from pathlib import Path

from timekit.units import NS_PER_S

LEAP_LIST_PATHS = (Path("/usr/share/zoneinfo/leap-seconds.list"), Path("/etc/leap-seconds.list"))
NTP_UNIX_DELTA_S = 2_208_988_800  # 1900-01-01 to 1970-01-01


def parse_leap_list(text: str) -> tuple[int, ...]:
    """The end instants (Unix ns) of the leap seconds in a leap-seconds.list text, oldest first."""
    rows = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            rows.append((int(fields[0]), int(fields[1])))
    rows.sort()
    return tuple((ntp - NTP_UNIX_DELTA_S) * NS_PER_S for (ntp, off), (_, prev) in zip(rows[1:], rows[:-1],
                                                                                          strict=True)
                 if off != prev)


@functools.cache
def known_leaps() -> tuple[int, ...]:
    """The system's leap seconds (empty when no list is readable)."""
    for path in LEAP_LIST_PATHS:
        try:
            return parse_leap_list(path.read_text(encoding="ascii", errors="replace"))
        except OSError:
            continue
    return ()
