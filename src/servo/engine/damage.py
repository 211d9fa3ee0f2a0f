"""Errors for stored objects that cannot be read: where they are and what to do.

A truncated or garbled ledger object, manifest or projection file is not a bug to
report with a traceback: the message names the file (as a path on disk for the
local store) and the way out, ``servo doctor --repair``, which moves unreadable
objects aside and rebuilds what derives from them from the ledger.
"""

from __future__ import annotations

from pathlib import Path

from servo.errors import CorruptObjectError
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
