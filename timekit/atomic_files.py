"""Files other tools read (CSV, textfile-collector output, reports): written whole or not at all.

A writer writes `.{name}.tmp-{pid}-{random}` next to the target, fsyncs it, `os.replace`s it
over the target and fsyncs the directory: a reader sees the old file or the new one, never a
half-written one. On failure the temp file is removed and the old file stays; a writer killed
mid-write leaves its temp file, which the next writer of the same target removes once that pid
no longer runs.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from timekit.errors import TimekitError, UsageError

TEMP_INFIX = ".tmp-"
_TEMP_RE = re.compile(r"\.tmp-(\d+)-[0-9a-f]+$")


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (a zombie writer is a dead writer)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def temp_pid(name: str) -> int | None:
    """The writer's pid in a temp file (or staging directory) name, or None if it is not one."""
    m = _TEMP_RE.search(name)
    return int(m.group(1)) if m else None


def temp_name(target: Path) -> Path:
    """A fresh temp path next to `target` carrying this process's pid."""
    return target.with_name(f".{target.name}{TEMP_INFIX}{os.getpid()}-{secrets.token_hex(4)}")


def clean_stale_temps(target: Path) -> list[Path]:
    """Remove temp files of `target` left by writers that no longer run (killed mid-write)."""
    removed: list[Path] = []
    prefix = f".{target.name}{TEMP_INFIX}"
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        pid = temp_pid(p.name)
        if p.name.startswith(prefix) and pid is not None and not pid_alive(pid):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


STDOUT = "-"  # `--out -`: write to standard output, no file, no rename


def open_regular(path: Path, flags: int, mode: int = 0o644, *, what: str) -> int:
    """Open a file timekit keeps for itself (the store's lock and clock state, lab files): never
    through a symlink (O_NOFOLLOW: a planted link to /etc/passwd is not truncated), never a FIFO
    or device (O_NONBLOCK so a planted FIFO cannot hang the open, then a type check). `what`
    names the file in the one-line error (OSError subclass `UnsafeFileError`)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"{what} {path} is a symlink: refusing to follow it (remove it)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFileError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file: refusing "
                              "to use it (remove it)")
    return fd


class UnsafeFileError(OSError):
    """A file timekit keeps is a symlink, FIFO, device or directory: it is left alone."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unsafe file"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ('a FIFO', 'a character device', ...)."""
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def out_file(target: Path) -> Path:
    """The regular file `--out target` will replace; UsageError in one line for anything else.

    - A regular file, or a name that does not exist yet in an existing directory: that file.
    - A device node, FIFO, socket or directory: refused, never replaced (`--out -` is stdout).
    - A symlink is followed only when it belongs to the user running timekit or to root (the
      kernel's protected_symlinks rule): the regular file it points to is replaced, the link
      stays. A link someone else planted (in /tmp, say) is refused, so root cannot be aimed at
      another file through it.
    """
    target = Path(target)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"--out {target}: {exc.strerror}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        if st.st_uid not in (os.geteuid(), 0):
            raise UsageError(f"--out {target} is a symlink owned by uid {st.st_uid}, not by you or root: "
                             "refusing to follow it")
        try:
            final = os.stat(target)
        except FileNotFoundError:  # dangling: the file it names will be created
            final = None
        except OSError as exc:
            raise UsageError(f"--out {target}: {exc.strerror}") from None
        if final is not None and not stat.S_ISREG(final.st_mode):
            raise UsageError(f"--out {target} points to {file_kind(final.st_mode)}, not a regular file: "
                             "refusing to replace it (--out - writes to stdout)")
        resolved = Path(os.path.realpath(target))
        if final is None and not resolved.parent.is_dir():
            raise UsageError(f"--out {target}: directory {resolved.parent} does not exist")
        return resolved
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"--out {target} is a directory; give a file name")
        raise UsageError(f"--out {target} is {file_kind(st.st_mode)}, not a regular file: refusing to "
                         "replace it (--out - writes to stdout)")
    if st is None and not target.parent.is_dir():
        raise UsageError(f"--out {target}: directory {target.parent} does not exist")
    return target


def check_out_path(target: Path) -> None:
    """UsageError unless `target` is `-` or can be replaced as a regular file (`out_file`)."""
    if str(target) != STDOUT:
        out_file(target)


@contextmanager
def atomic_output(target: Path, *, binary: bool = False, chmod: int | None = None) -> Iterator[IO[Any]]:
    """A file that replaces `target` only when the block succeeds (temp + fsync + os.replace);
    `-` is standard output (written through, nothing renamed). See `out_file` for what a target
    may be (never a device, FIFO, socket or someone else's symlink).

    Text (UTF-8, no newline translation) or `binary`; `chmod` sets the mode whatever the umask
    (node_exporter must be able to read a textfile). On any exception the previous `target`
    stays as it was and the temp file is removed (after a kill: by the next writer).
    """
    if str(target) == STDOUT:
        stream = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    target = out_file(Path(target))
    clean_stale_temps(target)
    tmp = temp_name(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask decides, like any file
    except OSError as exc:
        raise TimekitError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            if chmod is not None:
                os.fchmod(fh.fileno(), chmod)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise TimekitError(f"cannot write {target}: {exc.strerror or exc}; "
                               "the previous file (if any) is unchanged") from None
        raise
    fsync_dir(target.parent)
