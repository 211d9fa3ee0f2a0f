"""Collecting the temporary files that killed writes left in a local store.

Kept apart from `servo.storage.local` so that importing the store (and the CLI)
stays cheap: logging and metrics load only when a collection runs.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage import _files
from servo.storage._paths import TEMP_PREFIX, check_prefix

log = get_logger(__name__)

TEMPS_COLLECTED = metrics.counter(
    "servo_storage_temporary_files_collected_total",
    "Temporary files of interrupted writes removed from the local store.",
)


def collect_temporary_files(root: str, prefix: str, max_age_s: float) -> list[str]:
    """Remove the temporary files under `root`/`prefix` that no live write owns
    (see `LocalObjectStore.collect_temporary_files`); returns them, sorted."""
    check_prefix(prefix)
    start = f"{root}/{prefix.rpartition('/')[0]}".rstrip("/")
    now, max_age = time.time_ns(), int(max_age_s * 1e9)
    removed = []
    for directory, _dirs, names in os.walk(start):
        for name in names:
            if not name.startswith(TEMP_PREFIX):
                continue
            full = f"{directory}/{name}"
            relative = full[len(root) + 1 :]
            if not relative.startswith(prefix):
                continue
            with contextlib.suppress(FileNotFoundError):
                info = os.lstat(full)
                if stat.S_ISREG(info.st_mode) and _files.temp_is_abandoned(
                    name, info.st_mtime_ns, now, max_age
                ):
                    try:
                        os.unlink(full)
                    except OSError as exc:
                        log.warning("storage.temporary_file_kept", path=full, error=str(exc))
                        continue
                    removed.append(relative)
    if removed:
        TEMPS_COLLECTED.inc(len(removed))
        log.info("storage.temporary_files_collected", root=root, count=len(removed))
    return sorted(removed)
