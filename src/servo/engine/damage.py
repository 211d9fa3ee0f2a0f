"""Errors for stored objects that cannot be read: where they are and what to do.

A truncated or garbled ledger object, manifest or projection file is not a bug to
report with a traceback: the message names the file (as a path on disk for the
local store) and the way out, ``servo doctor --repair``, which moves unreadable
objects aside and rebuilds what derives from them from the ledger.

Unreadable objects are moved aside, never deleted: `set_aside` copies their bytes
create-only to ``quarantine/{stamp}/{path}`` in the same store, where nothing in the
engine reads. ``stamp`` is a UTC time (``20261203T104512123456Z``), one folder per
repair.
"""

from __future__ import annotations

import time
from pathlib import Path

from servo.errors import CorruptObjectError, ObjectExistsError
from servo.storage.base import ObjectStore

#: The way out every message names.
REPAIR_HINT = (
    "run 'servo doctor --repair' (with the same --home) to move unreadable objects "
    "aside and rebuild from the ledger"
)


def where(store: ObjectStore, path: str) -> str:
    """`path` as the user finds it: a file path for stores with a local root."""
    root = getattr(store, "root", None)
    return str(root / path) if isinstance(root, Path) else path


def corrupt_object(
    store: ObjectStore, path: str, problem: str, cls: type[CorruptObjectError] = CorruptObjectError
) -> CorruptObjectError:
    """The error for the object at `path` that cannot be read because of `problem`."""
    return cls(f"{where(store, path)}: {problem}; {REPAIR_HINT}")


#: The folder of quarantined objects, under the store root (and under the home).
QUARANTINE = "quarantine"


def new_stamp() -> str:
    """A UTC time stamp naming one repair's quarantine folder."""
    now = time.time_ns()
    seconds, micros = divmod(now // 1000, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f"{micros:06d}Z"


def set_aside(store: ObjectStore, path: str, data: bytes, stamp: str | None = None) -> str:
    """Copy `data`, the bytes of `path`, to ``quarantine/{stamp}/{path}``; return that path.

    The copy is create-only; finding the same bytes there already is success (a
    repeated repair). Removing or replacing the original is the caller's business.

    Raises:
        ObjectExistsError: other bytes are already at the quarantine path.
    """
    target = f"{QUARANTINE}/{stamp or new_stamp()}/{path}"
    try:
        store.put_if_absent(target, data)
    except ObjectExistsError:
        if store.get(target).data != data:
            raise
    return target
