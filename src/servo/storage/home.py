"""Checks that a Servo home can be used, before anything is read or written in it.

A home is usable when it is a directory, or does not exist yet but its parent
directory does (the first ``servo materialize`` creates it; a missing parent is far
more often a typo than a wish, so it is never created silently). Writing also needs
the home (or, when it does not exist yet, its parent) to be writable.

Every problem is a `HomeError` naming the path and the way out, which the CLI prints
as one ``error:`` line. Damaged content inside a usable home (a truncated ledger
object, manifest or projection file, a corrupt catalog) is found where it is read
(`servo.errors.CorruptObjectError`) and by ``servo doctor``.
"""

from __future__ import annotations

import os
from pathlib import Path

from servo.errors import HomeError
from servo.observability.logging import get_logger

log = get_logger(__name__)

#: The advice every message ends with.
OTHER_HOME = "or pass another --home (or SERVO_HOME)"


def home_problem(home: Path, *, write: bool) -> str | None:
    """What makes `home` unusable, or None when it can be used.

    Args:
        home: the Servo home directory.
        write: whether the caller will write to it.
    """
    path = Path(home).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            return f"the Servo home {path} is not a directory: move that file away {OTHER_HOME}"
        if write and not os.access(path, os.W_OK | os.X_OK):
            return (
                f"the Servo home {path} is read-only: make it writable "
                f"(chmod -R u+w {path}) {OTHER_HOME}"
            )
        return None
    parent = path.parent
    if not parent.is_dir():
        if parent.exists():
            return f"the parent of the Servo home {path} is not a directory {OTHER_HOME}"
        return (
            f"the parent directory of the Servo home {path} does not exist: "
            f"create it (mkdir -p {parent}) {OTHER_HOME}"
        )
    if write and not os.access(parent, os.W_OK | os.X_OK):
        return f"the Servo home {path} cannot be created: {parent} is read-only {OTHER_HOME}"
    return None


def check_home(home: Path, *, write: bool) -> None:
    """Raise `HomeError` when `home` cannot be used (see the module docstring).

    Args:
        home: the Servo home directory.
        write: whether the caller will write to it (it must then be writable).

    Raises:
        HomeError: the message names the path and the way out.
    """
    problem = home_problem(home, write=write)
    if problem is not None:
        log.info("home.unusable", home=str(home), write=write, problem=problem)
        raise HomeError(problem)
