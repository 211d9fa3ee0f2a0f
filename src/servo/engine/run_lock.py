"""Which process drives a run: an exclusive OS file lock per run, under the home.

While the embedded runner drives a run (`EmbeddedRunner.wait`) it holds an exclusive
`fcntl.flock` on ``{lock_dir}/{tenant}/{workspace}/{run_id}.lock`` and writes its pid
into the file. The operating system releases the lock when the process ends, however
it ends (``kill -9`` included), so "a live process drives this run" is exactly "the
lock is held": `servo runs cancel` tries the lock without blocking to decide whether
to end the run itself or leave it to the live runner, and a second runner refuses to
drive a run that another one drives.

The lock is local to one machine (POSIX ``flock``): it says nothing about runners on
other machines sharing an object store; a lease in the object store does that for the
scale-out deployment, later. Lock files are left in place when released (deleting them
would race with a process opening them); they are a few bytes each.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from servo.errors import RunBusyError

#: The locks' directory under the home.
LOCKS_DIR = "locks"


def home_lock_dir(home: Path | str) -> Path:
    """Where a home keeps its run locks: ``{home}/locks``."""
    return Path(home) / LOCKS_DIR


def lock_path(lock_dir: Path, tenant_id: str, workspace_id: str, run_id: str) -> Path:
    """The lock file of one run."""
    return Path(lock_dir) / tenant_id / workspace_id / f"{run_id}.lock"


def try_flock(path: Path, content: str) -> int | None:
    """Take an exclusive, non-blocking `flock` on `path` and write `content` into it.

    Returns the open descriptor (closing it releases the lock), or None when another
    open file holds the lock (another process, or another lock object in this one).
    The parent directories are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, content.encode())
    return fd


def holder_pid(path: Path) -> int | None:
    """The pid on the first line of a lock file, when readable (informational only)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    first = text.partition("\n")[0].strip()
    return int(first) if first.isdigit() else None


class RunLock:
    """An exclusive, non-blocking lock on one run's lock file.

    Args:
        path: the lock file (see `lock_path`); its parent directories are created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True when taken (or held already)."""
        if self._fd is None:
            self._fd = try_flock(self.path, f"{os.getpid()}\n")
        return self._fd is not None

    def acquire(self, run_id: str) -> None:
        """Take the lock or fail with a message naming the process that holds it.

        Raises:
            RunBusyError: another live process drives the run.
        """
        if self.try_acquire():
            return
        holder = self.holder_pid()
        who = "another process" if holder is None else f"another process (pid {holder})"
        raise RunBusyError(
            f"run {run_id} is being driven by {who}; wait for it to finish, "
            f"or stop it with 'servo runs cancel {run_id}'"
        )

    def release(self) -> None:
        """Release the lock (closing the file releases it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid the holder wrote, when readable (informational only)."""
        return holder_pid(self.path)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
