"""A process that races other processes on a `LocalObjectStore` (see the local tests).

Kept free of test-only imports so that spawned processes start quickly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servo.errors import ObjectExistsError, PreconditionFailedError
from servo.storage.local import LocalObjectStore


def race(
    root: str, tasks: list[tuple[str, int | None]], name: str, barrier: Any, result_file: str
) -> None:
    """For each (path, expected generation or None), wait for the others, then write.

    None means `put_if_absent`; a generation means `put_if_generation`. Writes one
    JSON list to `result_file`: the generation won, or null when the write lost.
    """
    store = LocalObjectStore(Path(root), fsync=False)
    outcomes: list[int | None] = []
    for path, expected in tasks:
        barrier.wait(timeout=60)
        try:
            if expected is None:
                outcomes.append(store.put_if_absent(path, name.encode()))
            else:
                outcomes.append(store.put_if_generation(path, name.encode(), expected))
        except (ObjectExistsError, PreconditionFailedError):
            outcomes.append(None)
    Path(result_file).write_text(json.dumps(outcomes), encoding="utf-8")
