"""The records ``servo gc`` leaves: what it removed, when, and why.

Each collection writes one create-only JSON object, ``gc/{ulid}.json``, before it
removes anything::

    {"format": 1, "gc_id": "01J...", "created_at": 1733221512000000,
     "options": {"keep_runs": 10, "older_than_days": null, "as_of": ...},
     "bytes": 1234,
     "removed": [{"path": "outputs/a/__all__/01J....json", "size": 12,
                  "run_id": "01J...", "asset_key": "a", "partition_key": null}]}

Reading a value that is gone looks here (`removal_of`) to say that gc removed it
rather than "not found". This module only needs the object store, so the value
reader (`servo.sdk.io`) can use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from servo.errors import ObjectNotFoundError
from servo.storage.base import ObjectStore

#: Where the records live, under the store root.
GC_PREFIX = "gc/"
#: Version of the record document.
RECORD_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Removal:
    """One value a collection removed.

    Attributes:
        record: the path of the gc record that lists it.
        gc_id: the collection's id.
        created_at: when the collection ran (epoch µs).
        path: the value's path.
        run_id: the run that wrote it.
        asset_key: its asset.
    """

    record: str
    gc_id: str
    created_at: int
    path: str
    run_id: str
    asset_key: str


def record_path(gc_id: str) -> str:
    """The path of collection `gc_id`'s record."""
    return f"{GC_PREFIX}{gc_id}.json"


def write_record(store: ObjectStore, gc_id: str, document: dict[str, Any]) -> str:
    """Create the record of collection `gc_id` (create-only); return its path."""
    path = record_path(gc_id)
    body = {"format": RECORD_FORMAT, "gc_id": gc_id, **document}
    store.put_if_absent(path, json.dumps(body, sort_keys=True, indent=1).encode("utf-8"))
    return path


def read_records(store: ObjectStore) -> list[tuple[str, dict[str, Any]]]:
    """Every readable record, oldest first (lists ``gc/``)."""
    found = []
    for path in store.list_prefix(GC_PREFIX):
        try:
            document = json.loads(store.get(path).data)
        except (ObjectNotFoundError, ValueError):
            continue  # a damaged record only costs the friendlier message
        if isinstance(document, dict):
            found.append((path, document))
    return found


def removal_of(store: ObjectStore, location: str) -> Removal | None:
    """The collection that removed the value at `location`, or None."""
    for path, document in reversed(read_records(store)):
        for item in document.get("removed", ()):
            if isinstance(item, dict) and item.get("path") == location:
                return Removal(
                    record=path,
                    gc_id=str(document.get("gc_id", "")),
                    created_at=int(document.get("created_at", 0)),
                    path=location,
                    run_id=str(item.get("run_id", "")),
                    asset_key=str(item.get("asset_key", "")),
                )
    return None
