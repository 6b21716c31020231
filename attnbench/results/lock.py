"""One run at a time writes a results file, and a path it cannot write is refused up front.

Two runs appending to one file at once interleave whole records, but both run every case, so
the file ends with each case twice (issue 16: 16 records for 8 cases), and a `--resume` reads
the other run's half-written progress. A run therefore holds an exclusive `flock` on its
results file from before its first case to its end; a second run is refused in one line that
names the holder (read from the kernel's own table of locks, `/proc/locks`, where there is
one). The kernel drops the lock when the holder exits, however it ends, so a killed run never
leaves a stale lock behind.

Opening the file is also the check that it can be written at all: a read-only folder, a path
under a file, a device such as /dev/full are refused before anything runs, not after.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from attnbench.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, the checks still hold
    fcntl = None  # type: ignore[assignment]


def open_for_append(path: Path, what: str) -> int:
    """A file descriptor appending to `path` (created with its folder), a regular file; a
    one-line UserError naming `what` the file is for otherwise."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in reversed(path.parents) if p.exists() and not p.is_dir())
        raise UserError(f"cannot write the {what} {path}: {blocker} is a file, not a folder") from None
    except OSError as e:
        raise UserError(f"cannot create the folder of the {what} {path}: {e.strerror or e}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot write the {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"the {what} {path} is not a regular file: give a file path with -o")
    return fd


def check_writable(path: Path, what: str) -> None:
    """Refuse now, in one line, a file that could not be written later (and leave no empty
    file behind where there was none)."""
    created = not path.exists()
    os.close(open_for_append(path, what))
    if created:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def hold_results(path: Path) -> Iterator[None]:
    """Hold `path` for this run: writable, and locked against every other run. A file the run
    created and never wrote is removed if the run fails (an executor that cannot start)."""
    created, finished = not path.exists(), False
    fd = open_for_append(path, "results file")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"{path} is being written by {holder(fd)}: wait for it, or -o another file"
                ) from None
            except OSError:
                pass  # a file system without locks (some network mounts): run unguarded
        yield
        finished = True
    finally:
        if created and not finished and os.fstat(fd).st_size == 0:
            with contextlib.suppress(OSError):
                path.unlink()  # still under the lock: no other run can have written it
        os.close(fd)  # and with it the lock


def holder(fd: int) -> str:
    """Who holds a lock on the file open as `fd`: `process 123 (attnbench run --suite ci …)`,
    from /proc/locks (Linux); `another run` where that cannot be read."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "another run"
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[5] != key:  # "->": a waiter, not the holder
            continue
        pid = fields[4]
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            command = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv if a)
        except OSError:
            return f"process {pid}"
        return f"process {pid} ({command[:120]})"
    return "another run"
