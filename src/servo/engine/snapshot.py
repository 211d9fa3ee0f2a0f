"""Snapshots: the projection tables named by one manifest, as the controllers see them.

Invariants:

- **Controllers read projections only** (SPEC §4 invariant 5): a `Snapshot` is built
  from a manifest's files, never from the JSON ledger.
- **No listing** (invariant 6): every file path comes from the manifest.
- **Cheap when unchanged.** Files are immutable, so a table's merged content is a
  pure function of its file list. Merged tables are cached by
  ``(store, table, base)`` together with the deltas they include; an unchanged table
  costs a dict lookup, and a table that gained deltas is extended by merging only the
  new ones (merging is associative). Decoded files come from the by-path cache of
  `servo.engine.projections`, which the compactor fills as it writes, so a snapshot
  of what a compactor just published in this process reads no file.

Tables load lazily, on first use of each table.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from servo.engine import schema as s
from servo.engine.manifest import EMPTY_TABLE, Manifest, ManifestStore, TableFiles
from servo.engine.projections import merge, read_table_file
from servo.engine.schema import OutboxRow, RunRow, TableSpec, TaskRow, TimerRow
from servo.errors import EngineError
from servo.storage.base import ObjectStore

#: Merged tables kept by the merge cache (each entry is one table of one base).
MERGE_CACHE_ENTRIES = 64

_MergeKey = tuple[int, str, str | None]


class _MergeCache:
    """LRU of merged tables keyed by (store id, table, base) -> (deltas, table)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[_MergeKey, tuple[tuple[str, ...], pa.Table]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _MergeKey) -> tuple[tuple[str, ...], pa.Table] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: _MergeKey, deltas: tuple[str, ...], table: pa.Table) -> None:
        with self._lock:
            self._entries[key] = (deltas, table)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_merged = _MergeCache(MERGE_CACHE_ENTRIES)


def clear_merge_cache() -> None:
    """Forget every cached merged table (benchmarks of cold loads, tests)."""
    _merged.clear()


def load_table(store: ObjectStore, spec: TableSpec, files: TableFiles) -> pa.Table:
    """The merged content of one table (base + deltas), canonical and cached.

    Args:
        store: the object store holding the files.
        spec: the table's spec.
        files: the table's files as named by a manifest.

    Returns:
        The table sorted by key, one row per key.
    """
    if not files.files:
        return spec.schema.empty_table()
    key: _MergeKey = (id(store), spec.name, files.base)
    entry = _merged.get(key)
    if entry is not None:
        cached_deltas, cached = entry
        if cached_deltas == files.deltas:
            return cached
        if files.deltas[: len(cached_deltas)] == cached_deltas:
            extra = files.deltas[len(cached_deltas) :]
            table = merge(spec, cached, [read_table_file(store, p, spec) for p in extra])
            _merged.put(key, files.deltas, table)
            return table
    base = None if files.base is None else read_table_file(store, files.base, spec)
    if files.deltas:
        table = merge(spec, base, [read_table_file(store, p, spec) for p in files.deltas])
    else:
        table = base if base is not None else spec.schema.empty_table()
    _merged.put(key, files.deltas, table)
    return table


class Snapshot:
    """The projections as of one manifest generation (generation 0: all empty).

    Args:
        store: the object store holding the projection files.
        manifest: the manifest to read, or None for the empty generation 0.
    """

    def __init__(self, store: ObjectStore, manifest: Manifest | None) -> None:
        self._store = store
        self.manifest = manifest
        self._tables: dict[str, pa.Table] = {}
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """The manifest generation (0 when nothing was published)."""
        return 0 if self.manifest is None else self.manifest.generation

    @property
    def last_processed_at(self) -> int:
        """The watermark (epoch µs): events notified before it are folded; 0 if none."""
        return 0 if self.manifest is None else self.manifest.last_processed_at

    def files_of(self, name: str) -> TableFiles:
        """The files the manifest names for table `name`."""
        return EMPTY_TABLE if self.manifest is None else self.manifest.files_of(name)

    def table(self, name: str) -> pa.Table:
        """The whole table `name`, sorted by key.

        For a table of runs (`servo.engine.schema.RUN_TABLES`) that is its hot rows
        and its history twin's (archived runs) together; `hot` reads only the former.

        Raises:
            KeyError: no projection table has that name.
        """
        history = s.HISTORY_OF.get(name)
        if history is None:
            return self.hot(name)
        whole = f"whole:{name}"
        found = self._tables.get(whole)
        if found is None:
            archived = self.hot(history.name)
            hot = self.hot(name)
            found = hot if archived.num_rows == 0 else merge(history, archived, [hot])
            self._tables[whole] = found
        return found

    def hot(self, name: str) -> pa.Table:
        """The table `name` as the manifest names it: for a run table, only the runs
        not archived (what a controller acts on), sorted by key."""
        found = self._tables.get(name)
        if found is not None:
            return found
        spec = s.TABLES_BY_NAME[name]
        with self._lock:
            found = self._tables.get(name)
            if found is None:
                found = load_table(self._store, spec, self.files_of(name))
                self._tables[name] = found
        return found

    def rows(self, name: str, table: pa.Table | None = None) -> list[Any]:
        """Rows (schema dataclasses) of table `name` (all of it, archived runs
        included), or of a filtered part of it."""
        spec = s.TABLES_BY_NAME[name]
        return spec.from_arrow(self.table(name) if table is None else table)

    def hot_rows(self, name: str) -> list[Any]:
        """Rows of table `name` without the archived runs' (`hot`)."""
        return s.TABLES_BY_NAME[name].from_arrow(self.hot(name))

    def _filter(self, name: str, mask: pa.ChunkedArray | pa.Array, table: pa.Table) -> list[Any]:
        return self.rows(name, table.filter(mask))

    def ready_tasks(self) -> list[TaskRow]:
        """Tasks whose dependencies are satisfied and that wait for a dispatch."""
        tasks = self.hot("tasks")
        return self._filter("tasks", pc.equal(tasks.column("status"), s.READY), tasks)

    def pending_outbox(self) -> list[OutboxRow]:
        """Dispatches not yet handed to the queue."""
        outbox = self.hot("dispatch_outbox")
        mask = pc.equal(outbox.column("status"), s.OUTBOX_PENDING)
        return self._filter("dispatch_outbox", mask, outbox)

    def due_timers(self, now: int) -> list[TimerRow]:
        """Scheduled timers whose `due_at` is at or before `now` (epoch µs)."""
        timers = self.hot("timers")
        mask = pc.and_(
            pc.equal(timers.column("status"), s.TIMER_SCHEDULED),
            pc.less_equal(timers.column("due_at"), now),
        )
        return self._filter("timers", mask, timers)

    def run(self, run_id: str) -> RunRow | None:
        """The run `run_id` (archived or not), or None when the snapshot does not know it."""
        for name in ("runs", "history_runs"):
            runs = self.hot(name)
            found: list[RunRow] = self._filter(name, pc.equal(runs.column("run_id"), run_id), runs)
            if found:
                return found[0]
        return None

    def runs(self) -> list[RunRow]:
        """Every run, archived or not, by run_id."""
        return self.rows("runs")

    def tasks_of(self, run_id: str) -> list[TaskRow]:
        """The tasks of run `run_id` (archived or not), by task_key."""
        for name in ("tasks", "history_tasks"):
            tasks = self.hot(name)
            found: list[TaskRow] = self._filter(
                name, pc.equal(tasks.column("run_id"), run_id), tasks
            )
            if found:
                return found
        return []


class SnapshotReader:
    """Loads snapshots of one (tenant, workspace) from the latest or a given manifest."""

    def __init__(self, store: ObjectStore, tenant_id: str, workspace_id: str) -> None:
        self._store = store
        self.manifests = ManifestStore(store, tenant_id, workspace_id)

    def load(self, manifest: Manifest | None = None) -> Snapshot:
        """A snapshot of `manifest`, or of the latest published one when None.

        Raises:
            EngineError: `manifest` belongs to another tenant or workspace.
        """
        if manifest is None:
            manifest = self.manifests.latest()
        elif (manifest.tenant_id, manifest.workspace_id) != (
            self.manifests.tenant_id,
            self.manifests.workspace_id,
        ):
            raise EngineError(
                f"manifest of {manifest.tenant_id}/{manifest.workspace_id} given to the reader "
                f"of {self.manifests.tenant_id}/{self.manifests.workspace_id}"
            )
        return Snapshot(self._store, manifest)


#: Called with each snapshot a runner publishes (e.g. the catalog projector).
PublishListener = Callable[[Snapshot], None]
