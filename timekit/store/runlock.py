"""An advisory lock so overlapping cron runs never interleave (flock on DB path + '.lock').

The kernel drops an flock when its holder dies, even by `kill -9`, so a crashed run
never leaves a stale lock behind (FAULTS S1/S2).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from timekit.atomic_files import UnsafeFileError, open_regular
from timekit.errors import LockedError, StoreError


@contextmanager
def run_lock(db_path: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the collect lock for `db_path`; wait up to `wait_s` s, then raise LockedError."""
    lock_path = Path(str(db_path) + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(lock_path, os.O_RDWR | os.O_CREAT, 0o644, what="lock file")
    except UnsafeFileError as exc:
        raise StoreError(str(exc)) from None
    except OSError as exc:
        raise StoreError(f"cannot open lock file {lock_path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(f"another timekit run holds {lock_path}; "
                                      "this run exits without touching the database") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
