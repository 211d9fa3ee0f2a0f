"""One process at a time drives runs on a home: an exclusive OS file lock on the home.

Every command that drives runs or rewrites derived state (``servo materialize``,
``runs resume``, ``runs retry``, ``gc``, ``doctor --repair``/``--rebuild``,
``restore``, and `servo.materialize` with a home) holds an exclusive `flock` on
``{home}/locks/home.lock`` for as long as it works, taken before it reads any state
or opens the catalog, and writes its pid and purpose into the file. The operating
system releases the lock when the process ends, however it ends (``kill -9``
included), so a stale lock cannot exist and nothing ever has to clean one up.

A second such command fails at once with `HomeBusyError` naming the holder's pid;
the command line prints it as one ``error:`` line and exits 75 (EX_TEMPFAIL: the
command is fine, the home is busy; try again later). Commands that only read (``runs
list``, ``runs show``, ``runs logs``, ``lineage``, ``assets``, ``values``, ``doctor``
without a repair, ``backup``) never take the lock and work while a run is in
progress; ``runs cancel`` does not take it either (its request is a create-only
ledger object, and ending a run nobody drives is decided by that run's own lock,
`servo.engine.run_lock`).

Why a lock and not leases (docs/adr/0013-one-driver-per-home.md): the state a driver
folds, its recovery watermark, the embedded catalog's migrations and the garbage
collector's view are per home, not per run; one driver per home keeps every one of
them single-writer. Like the run lock it is local to one machine: runners on several
machines sharing an object store need a lease in the store (scale-out, later).
"""

from __future__ import annotations

import os
from pathlib import Path

from servo.engine.run_lock import LOCKS_DIR, holder_pid, try_flock
from servo.errors import HomeBusyError
from servo.observability import metrics
from servo.observability.logging import get_logger

log = get_logger(__name__)

#: The home lock's file name, under ``{home}/locks/``.
HOME_LOCK = "home.lock"

BUSY = metrics.counter(
    "servo_home_busy_total", "Commands refused because another process holds the home lock."
)


def home_lock_path(home: Path | str) -> Path:
    """The home lock's file: ``{home}/locks/home.lock``."""
    return Path(home) / LOCKS_DIR / HOME_LOCK


def busy_message(home: Path | str, pid: int | None, purpose: str | None) -> str:
    """The one line a refused command prints."""
    who = "another servo process" + ("" if pid is None else f" (pid {pid}")
    if pid is not None:
        who += f": {purpose})" if purpose else ")"
    return (
        f"{who} is running on {Path(home).absolute()}; wait for it to finish, or stop it "
        "(Ctrl-C where it runs, or 'servo runs cancel RUN_ID'; 'servo runs list' shows "
        "its run); reading commands work meanwhile"
    )


class HomeLock:
    """The exclusive lock of one home (see the module docstring).

    Args:
        home: the Servo home directory (created when missing: the first ``servo
            materialize`` creates its home).
        purpose: what the holder does, written into the lock file for the message a
            refused command prints (e.g. ``servo materialize``).
    """

    def __init__(self, home: Path | str, purpose: str) -> None:
        self.home = Path(home)
        self.path = home_lock_path(home)
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or fail naming the process that holds it.

        Raises:
            HomeBusyError: another live process (or another `HomeLock` of this
                process) holds it.
        """
        if self._fd is not None:
            return
        self._fd = try_flock(self.path, f"{os.getpid()}\n{self.purpose}\n")
        if self._fd is not None:
            return
        pid, purpose = self.holder()
        BUSY.inc()
        log.info("home.busy", home=str(self.home), holder_pid=pid, holder=purpose,
                 purpose=self.purpose)  # fmt: skip
        raise HomeBusyError(busy_message(self.home, pid, purpose))

    def holder(self) -> tuple[int | None, str | None]:
        """The holder's pid and purpose as it wrote them (informational only)."""
        pid = holder_pid(self.path)
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return pid, None
        purpose = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
        return pid, purpose

    def release(self) -> None:
        """Release the lock (closing the file releases it; the file stays)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
