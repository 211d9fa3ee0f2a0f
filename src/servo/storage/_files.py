"""POSIX file primitives behind `LocalObjectStore` (see its module for the design).

Every function translates ``OSError`` into a servo `StorageError` naming the object
path it works for; ``EAGAIN``-like errors become `TransientStorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import socket
import stat
import time

from servo.errors import ObjectExistsError, StorageError, TransientStorageError
from servo.storage._paths import TEMP_PREFIX

_TRANSIENT_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.ENOLCK}
)
OPEN_READ = os.O_RDONLY | os.O_CLOEXEC
# Read-write: where flock is emulated with fcntl locks (NFS), LOCK_EX needs it.
_OPEN_LOCK = os.O_RDWR | os.O_CLOEXEC
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_MAX_ATTEMPTS = 8
# This host, as 8 hex digits: a temporary file's pid can only be checked on its host.
_HOST = hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:8]
#: Temporary file names carry it: this host, then this process's random part (so two
#: hosts sharing a directory never pick the same name).
TOKEN = _HOST + os.urandom(4).hex()
_temp_counter = itertools.count()


def error(action: str, path: str, exc: OSError) -> StorageError:
    """Translate an OS error into the servo error class, naming `path`."""
    cls = TransientStorageError if exc.errno in _TRANSIENT_ERRNOS else StorageError
    return cls(f"cannot {action} {path}: {exc.strerror or exc}")


def blocked(path: str) -> StorageError:
    """The error for an object and a directory wanting the same name."""
    return StorageError(
        f"cannot write {path}: an object exists where a directory of its path is "
        "needed, or the reverse (the local store cannot hold both 'a' and 'a/b')"
    )


def discard(temp: str) -> None:
    """Remove a temporary file; a leftover one is invisible and harmless."""
    with contextlib.suppress(OSError):
        os.unlink(temp)


def sync_dir(directory: str, path: str) -> None:
    """fsync `directory` so that the entries just linked in it survive a crash."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise error("sync the directory of", path, exc) from exc


def link_conflict(temp: str, final: str, path: str) -> StorageError | None:
    """Why ``link(temp, final)`` met EEXIST; None if it did link (NFS retransmission)."""
    with contextlib.suppress(OSError):
        if os.path.samefile(temp, final):
            return None
    if os.path.isdir(final):
        return blocked(path)
    return ObjectExistsError(f"object already exists: {path}")


def make_dirs(directory: str, path: str, fsync: bool) -> None:
    """Create `directory` and its missing parents (fsyncing each new entry)."""
    missing: list[str] = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise blocked(path) from None
    except OSError as exc:
        raise error("create the directory for", path, exc) from exc
    if fsync:
        for created in missing:
            sync_dir(os.path.dirname(created), path)


def write_temp(
    directory: str, path: str, data: bytes, after: int | None, fsync: bool
) -> tuple[str, int]:
    """Write `data` to a new temporary file in `directory`, stamped with a generation.

    Args:
        directory: where the object will be published (created when missing).
        path: the object path, for error messages.
        data: the content.
        after: for a replace, the current generation: the new one is greater.
        fsync: flush the file to disk before returning.

    Returns:
        The temporary file's name and its generation.
    """
    fd = -1
    for _ in range(_MAX_ATTEMPTS):
        temp = f"{directory}/{TEMP_PREFIX}{os.getpid()}-{TOKEN}-{next(_temp_counter)}"
        try:
            fd = os.open(temp, _OPEN_TEMP, 0o666)
            break
        except FileNotFoundError:
            make_dirs(directory, path, fsync)
        except FileExistsError:
            continue  # a stale temporary file from a crashed process
        except NotADirectoryError:
            raise blocked(path) from None
        except OSError as exc:
            raise error("write", path, exc) from exc
    if fd < 0:
        raise StorageError(f"cannot write {path}: no temporary file could be created")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        generation = _stamp(fd, path, after)
        if fsync:
            os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        discard(temp)
        if isinstance(exc, OSError):
            raise error("write", path, exc) from exc
        raise
    os.close(fd)
    return temp, generation


def _stamp(fd: int, path: str, after: int | None) -> int:
    """Set the file's mtime to a fresh generation (greater than `after`); return it."""
    wanted = time.time_ns() if after is None else max(time.time_ns(), after + 1)
    step = 1
    while True:
        os.utime(fd, ns=(wanted, wanted))
        stored = os.fstat(fd).st_mtime_ns  # what the file system kept of it
        if stored > 0 and (after is None or stored > after):
            return stored
        step *= 10  # the file system rounds timestamps: step over its resolution
        if step > 10**12:
            raise StorageError(f"cannot write {path}: file timestamps are too coarse")
        wanted = (after or 0) + step


def lock_current(final: str, path: str) -> tuple[int, int] | None:
    """Take ``flock(LOCK_EX)`` on the file now at `final`.

    Returns:
        The locked descriptor and the file's generation, or None when no object is
        at `final`. The caller closes the descriptor to release the lock.
    """
    for _ in range(_MAX_ATTEMPTS * 8):
        try:
            fd = os.open(final, _OPEN_LOCK)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None  # nothing there, or a directory of other objects
        except OSError as exc:
            raise error("lock", path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now: os.stat_result | None = os.stat(final)
            except FileNotFoundError:
                now = None
        except OSError as exc:
            os.close(fd)
            raise error("lock", path, exc) from exc
        # The open descriptor keeps the inode alive, so its number cannot be reused.
        if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
            if stat.S_ISREG(held.st_mode):
                return fd, held.st_mtime_ns
            os.close(fd)
            return None
        os.close(fd)
        if now is None:
            return None
        # Replaced while we waited for the lock: lock the new file instead.
    raise TransientStorageError(f"cannot lock {path}: it keeps being replaced")


def temp_is_abandoned(name: str, mtime_ns: int, now_ns: int, max_age_ns: int) -> bool:
    """Whether the temporary file `name` belongs to no live write.

    It does when it is older than `max_age_ns` (no write takes that long), or when its
    writer was a process of this host that is gone (a killed write). A file of
    another host, or of a live process, is kept until it is old.
    """
    if now_ns - mtime_ns >= max_age_ns:
        return True
    parts = name.removeprefix(TEMP_PREFIX).split("-")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) != len(TOKEN):
        return False
    if not parts[1].startswith(_HOST):
        return False
    return not _alive(int(parts[0]))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else (EPERM)
    return True
