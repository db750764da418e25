"""The published clock state: a 256-byte memory-mapped file, written under a generation counter.

Layout (little endian), as AWS ClockBound's shared memory segment does it::

    0   8s  magic b"TKCLOCK1"
    8   Q   generation: odd while a writer is in the middle, even when the record is whole
    16  ... record (STRUCT below): anchor, [lo, hi], rates, ages, flags, boot id

A writer (serialised by flock) makes the generation odd, writes the record, makes it even.
A reader reads the generation, the record, the generation again, and keeps the record only
if both reads are the same even number and the record's CRC-32 matches: it never uses a
half-written record (the CRC also covers CPUs that reorder plain stores, where the counter
alone is not enough from Python). A writer that
died mid-write leaves an odd generation; the next writer moves on from it. The file is never
truncated or replaced, so readers can keep it mapped forever.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from timekit.analysis.clock_state import ClockState, supersedes
from timekit.atomic_files import UnsafeFileError, open_regular
from timekit.errors import StoreError

MAGIC = b"TKCLOCK1"
FILE_SIZE = 256
GEN_OFFSET = 8
RECORD_OFFSET = 16
RECORD = struct.Struct("<qqqqdddddqB36sq")  # 125 bytes, then a CRC-32 of them (CHECK)
CHECK = struct.Struct("<I")
FLAG_ANCHOR_UNKNOWN, FLAG_HAS_INTERVAL, FLAG_SINGLE_SOURCE = 1, 2, 4
READ_TRIES = 100  # a writer holds the odd generation for a few µs; a dead one forever


def state_path_for(db: Path) -> Path:
    """Where the state of store `db` is published: next to it, `<db>.clock`."""
    return db.with_name(db.name + ".clock")


def _pack(state: ClockState, boot_id: str | None) -> bytes:
    flags = ((FLAG_ANCHOR_UNKNOWN if state.anchor_unknown else 0)
             | (FLAG_HAS_INTERVAL if state.has_interval else 0)
             | (FLAG_SINGLE_SOURCE if state.single_source else 0))
    return RECORD.pack(state.anchor_realtime_ns, state.anchor_boottime_ns, state.lo_ns, state.hi_ns,
                       state.drift_ppm, state.growth_ppm, state.evidence_age_s, state.fresh_s,
                       state.void_after_s, state.step_tolerance_ns, flags,
                       (boot_id or "").encode("ascii", "replace")[:36], state.leap_from_ns)


def unpack(raw: tuple[Any, ...]) -> tuple[ClockState, str]:
    """(state, boot id) from `RECORD.unpack_from` output."""
    (a_rt, a_bt, lo, hi, drift, growth, age, fresh, void, tol, flags, boot, leap_from) = raw
    state = ClockState(a_rt, a_bt, lo, hi, drift, growth, age, fresh, void, tol,
                       anchor_unknown=bool(flags & FLAG_ANCHOR_UNKNOWN),
                       has_interval=bool(flags & FLAG_HAS_INTERVAL),
                       single_source=bool(flags & FLAG_SINGLE_SOURCE), leap_from_ns=leap_from)
    return state, boot.rstrip(b"\x00").decode("ascii", "replace")


def publish(path: Path, state: ClockState, boot_id: str | None, *, keep_newer: bool = False) -> int:
    """Write `state` into the file at `path` (created if missing); returns the new generation.

    `keep_newer`: a published state of this boot anchored later than `state` is kept
    (`clock_state.supersedes`; the file is left alone and its generation returned), so that a slow
    publisher never rolls readers back past a faster one's newer evidence.
    """
    return publish_over(path, state, boot_id, keep_newer=keep_newer)[0]


def publish_over(path: Path, state: ClockState, boot_id: str | None, *,
                 keep_newer: bool = False) -> tuple[int, ClockState | None]:
    """`publish`, also returning the state of this boot that `state` replaced (None: none, another
    boot's, or kept because it was newer), read under the writer's lock."""
    record = _pack(state, boot_id)
    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o644, what="clock state file")
    except UnsafeFileError as exc:
        raise StoreError(str(exc)) from None
    except OSError as exc:
        raise StoreError(f"cannot publish the clock state to {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if st.st_size < FILE_SIZE:
            os.ftruncate(fd, FILE_SIZE)
        if st.st_uid == os.geteuid() and st.st_mode & 0o644 != 0o644:
            os.fchmod(fd, 0o644)  # every user's IntervalClock reads it, whatever the publisher's umask
        with mmap.mmap(fd, FILE_SIZE) as mm:
            if mm[:8] != MAGIC:
                mm[:8] = MAGIC
            gen: int = struct.unpack_from("<Q", mm, GEN_OFFSET)[0]
            current = _current(mm, gen)
            same_boot = current is not None and current[1] == (boot_id or "")
            if keep_newer and current is not None and same_boot and not supersedes(state, current[0]):
                return gen, None
            writing = (gen + 1) | 1  # odd: readers keep what they had
            struct.pack_into("<Q", mm, GEN_OFFSET, writing)
            mm[RECORD_OFFSET:RECORD_OFFSET + len(record)] = record
            CHECK.pack_into(mm, RECORD_OFFSET + RECORD.size, zlib.crc32(record))
            struct.pack_into("<Q", mm, GEN_OFFSET, writing + 1)  # even: whole again
        return writing + 1, current[0] if current is not None and same_boot else None
    except OSError as exc:
        raise StoreError(f"cannot publish the clock state to {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _current(mm: mmap.mmap, gen: int) -> tuple[ClockState, str] | None:
    """The whole record in a mapped file (the writer's lock held), or None (none yet, torn, corrupt)."""
    if gen == 0 or gen & 1 or mm[:8] != MAGIC:
        return None
    record = bytes(mm[RECORD_OFFSET:RECORD_OFFSET + RECORD.size])
    if CHECK.unpack_from(mm, RECORD_OFFSET + RECORD.size)[0] != zlib.crc32(record):
        return None
    try:
        return unpack(RECORD.unpack(record))
    except ValueError:
        return None


class StateReader:
    """A read-only mapping of a published state file; `generation()` costs one memory read."""

    def __init__(self, path: Path) -> None:
        fd = open_regular(path, os.O_RDONLY, what="clock state file")  # a planted FIFO must not hang
        try:
            if os.fstat(fd).st_size < FILE_SIZE:
                raise ValueError(f"{path} is not a clock state file (too short)")
            self._mm = mmap.mmap(fd, FILE_SIZE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if self._mm[:8] != MAGIC:
            self._mm.close()
            raise ValueError(f"{path} is not a timekit clock state file")
        self._view = memoryview(self._mm)
        self.gen = self._view[GEN_OFFSET:GEN_OFFSET + 8].cast("Q")  # gen[0]: the live counter

    def read(self) -> tuple[int, ClockState, str] | None:
        """(generation, state, boot id) of a whole record, or None if no whole, valid record was seen
        (never written, a writer mid-write or dead mid-write, or a record that fails its CRC)."""
        gen, mm = self.gen, self._mm
        end = RECORD_OFFSET + RECORD.size
        for _ in range(READ_TRIES):
            g1 = gen[0]
            if g1 & 1:
                continue
            raw = mm[RECORD_OFFSET:end]
            crc = CHECK.unpack_from(mm, end)[0]
            if gen[0] != g1:
                continue
            if g1 == 0 or zlib.crc32(raw) != crc:
                return None  # created and never written, or torn/corrupt (the CRC catches weak ordering)
            try:
                state, boot = unpack(RECORD.unpack(raw))
            except ValueError:
                return None  # a record that cannot be a state (inverted, nan rates)
            return g1, state, boot
        return None

    def close(self) -> None:
        self.gen.release()
        self._view.release()
        self._mm.close()


assert RECORD_OFFSET + RECORD.size + CHECK.size <= FILE_SIZE, "the record must fit in the file"
