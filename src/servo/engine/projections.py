"""Projection files: Parquet IO for one table, a by-path read cache, and key merges.

Invariants:

- **The compactor is the only writer of projection files** (SPEC §4 invariant 2).
  Files are written once with `put_if_absent` and never change, so a decoded table
  may be cached by path for the life of the process (`read_table_file`).
- **Canonical form.** A table's logical content is its rows sorted by key with
  unique keys; written with the fixed options below, the same content always gives
  the same bytes (`canonical_bytes`), which is how "identical projections" is tested.
- **Merge semantics.** A table is a base file plus L0 delta files; a later file's
  row replaces an earlier file's row with the same key (`merge`). Merging is
  associative: ``merge(merge(b, [d1]), [d2]) == merge(b, [d1, d2])``, which lets
  readers extend a cached merge with new deltas only.

Merging is vectorised with pyarrow.compute (anti-join on the key, concat, sort), never
a Python loop over rows.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from servo.engine.damage import corrupt_object
from servo.engine.schema import TableSpec
from servo.errors import EngineError, ObjectNotFoundError
from servo.storage.base import ObjectStore

#: Fixed Parquet writer options: bytes depend only on the table's content.
PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "use_dictionary": False,
    "write_statistics": True,
    "row_group_size": 1 << 20,
    "data_page_size": 1 << 20,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": True,
}
#: Tables of at least this many rows are compressed with zstd (small and fast to read);
#: smaller ones (typical L0 deltas) with snappy, because zstd's per-column setup costs
#: more than it saves on a few rows. A function of the content, so still deterministic.
ZSTD_MIN_ROWS: Final = 1024
_ZSTD: Final[dict[str, Any]] = {"compression": "zstd", "compression_level": 3}
_SNAPPY: Final[dict[str, Any]] = {"compression": "snappy"}

#: Default bound of the by-path cache of decoded files, in Arrow bytes. It serves
#: the snapshot of what a compactor just wrote (publish listeners read it without
#: the disk); with the hot state bounded by active work that is a few files, and a
#: larger bound only held memory a long process never read again.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024

_KEY_SEP = "\x1f"
_converters: dict[str, tuple[Any, pa.DataType]] = {}


class _FileCache:
    """LRU of decoded projection files, bounded by their Arrow size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[tuple[int, str], pa.Table] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> pa.Table | None:
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
            return table

    def put(self, key: tuple[int, str], table: pa.Table) -> None:
        size = table.nbytes
        with self._lock:
            old = self._tables.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if size > self.max_bytes:
                return
            self._tables[key] = table
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._tables.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._bytes = 0

    def stats(self) -> tuple[int, int]:
        with self._lock:
            return len(self._tables), self._bytes


_cache = _FileCache(DEFAULT_CACHE_BYTES)


def clear_cache() -> None:
    """Forget every cached decoded file (benchmarks of cold reads, tests)."""
    _cache.clear()


def set_cache_limit(max_bytes: int) -> None:
    """Bound the by-path cache to `max_bytes` of Arrow data (evicts as needed)."""
    _cache.max_bytes = max_bytes
    _cache.clear()


def cache_stats() -> tuple[int, int]:
    """(files, Arrow bytes) currently held by the by-path cache."""
    return _cache.stats()


def _cache_key(store: ObjectStore, path: str) -> tuple[int, str]:
    # Paths carry a ULID so they are unique across stores; the store's identity guards
    # tests that reuse a literal path in several stores.
    return (id(store), path)


def conform(spec: TableSpec, table: pa.Table) -> pa.Table:
    """`table` with exactly `spec`'s columns, order and types, as one chunk per column.

    A nullable column the file lacks (added to the schema after the file was
    written) is read as nulls; files are never rewritten for it.

    Raises:
        EngineError: a column is missing or cannot be cast.
    """
    if table.schema.equals(spec.schema):
        conformed = table
    else:
        for name in spec.columns:  # a column added since the file was written: nulls
            if name not in table.column_names and spec.schema.field(name).nullable:
                field = spec.schema.field(name)
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        try:
            conformed = table.select(list(spec.columns)).cast(spec.schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise EngineError(f"table {spec.name}: does not match its schema ({exc})") from exc
    return conformed.combine_chunks()


def to_parquet(table: pa.Table) -> bytes:
    """Serialise `table` as Parquet with the fixed options (one row group per 1 Mi rows)."""
    sink = pa.BufferOutputStream()
    codec = _ZSTD if table.num_rows >= ZSTD_MIN_ROWS else _SNAPPY
    pq.write_table(table.combine_chunks(), sink, **PARQUET_OPTIONS, **codec)
    return bytes(sink.getvalue().to_pybytes())


def rows_to_table(spec: TableSpec, rows: Iterable[Any]) -> pa.Table:
    """Rows (schema dataclasses with unique keys) -> the canonical Arrow table.

    Same result as `TableSpec.to_arrow`, about twice as fast: one C-level
    ``attrgetter`` per row, conversion of the row tuples as one struct array, and an
    Arrow sort instead of a Python sort.
    """
    converter = _converters.get(spec.name)
    if converter is None:
        converter = (operator.attrgetter(*spec.columns), pa.struct(list(spec.schema)))
        _converters[spec.name] = converter
    getter, struct_type = converter
    values = list(map(getter, rows))
    if not values:
        return spec.schema.empty_table()
    if len(spec.columns) == 1:
        values = [(v,) for v in values]
    table = pa.Table.from_struct_array(pa.array(values, type=struct_type))
    if not table.schema.equals(spec.schema):
        table = table.cast(spec.schema)
    return table.take(_sort_indices(spec, table)) if table.num_rows > 1 else table


def canonical(spec: TableSpec, table: pa.Table) -> pa.Table:
    """`table` conformed to `spec` and sorted by key (keys assumed unique)."""
    conformed = conform(spec, table)
    if conformed.num_rows <= 1:
        return conformed
    return conformed.take(_sort_indices(spec, conformed))


def canonical_bytes(spec: TableSpec, table: pa.Table) -> bytes:
    """Parquet bytes of the canonical (sorted) form: equal iff the contents are equal."""
    return to_parquet(canonical(spec, table))


def write_table_file(store: ObjectStore, path: str, table: pa.Table) -> int:
    """Create the projection file `path` holding `table`; return its size in bytes.

    The table is written as given (callers pass canonical tables) and, once the
    create succeeded, cached under `path` so readers in this process never decode it.

    Raises:
        ObjectExistsError: a file is already at `path` (files are never replaced).
    """
    table = table.combine_chunks()
    data = to_parquet(table)
    store.put_if_absent(path, data)
    _cache.put(_cache_key(store, path), table)
    return len(data)


def read_table_file(store: ObjectStore, path: str, spec: TableSpec) -> pa.Table:
    """The table in the projection file `path`, from the by-path cache when possible.

    Raises:
        CorruptObjectError: no file at `path`, or not Parquet of `spec`'s schema (names
            `path` and ``servo doctor --repair``).
    """
    key = _cache_key(store, path)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        data = store.get(path).data
    except ObjectNotFoundError as exc:
        raise corrupt_object(store, path, "missing, though a manifest names it") from exc
    try:
        table = pq.read_table(pa.BufferReader(data))
        table = conform(spec, table)
    except (pa.ArrowInvalid, EngineError, OSError) as exc:
        raise corrupt_object(
            store, path, f"not a valid {spec.name} projection file ({exc})"
        ) from exc
    _cache.put(key, table)
    return table


def merge(spec: TableSpec, base: pa.Table | None, deltas: Sequence[pa.Table]) -> pa.Table:
    """Merge `deltas` over `base`: per key the latest file's row wins; sorted by key.

    Within one delta, a later row wins over an earlier one with the same key. The
    base is assumed to have unique keys (every file this module writes does).

    Args:
        spec: the table's spec (schema and key columns).
        base: the base table, or None for an empty base.
        deltas: delta tables, oldest first.

    Returns:
        The merged table in canonical form (conformed, sorted by key, one chunk).
    """
    parts = [conform(spec, d) for d in deltas if d.num_rows]
    base_table = None if base is None or base.num_rows == 0 else conform(spec, base)
    if not parts:
        return spec.schema.empty_table() if base_table is None else canonical(spec, base_table)
    combined = _dedupe_last(spec, parts)
    if base_table is None:
        return combined
    replaced = pc.is_in(_composite_key(spec, base_table), value_set=_composite_key(spec, combined))
    kept = base_table.filter(pc.invert(replaced))
    merged = pa.concat_tables([kept, combined]).combine_chunks()
    return merged.take(_sort_indices(spec, merged))


def _sort_indices(spec: TableSpec, table: pa.Table) -> pa.Array:
    return pc.sort_indices(table, sort_keys=[(k, "ascending") for k in spec.key])


def _composite_key(spec: TableSpec, table: pa.Table) -> pa.Array | pa.ChunkedArray:
    """One string per row identifying its key (for equality only, not ordering)."""
    columns = [
        table.column(k) if pa.types.is_string(table.schema.field(k).type)
        else pc.cast(table.column(k), pa.string())
        for k in spec.key
    ]  # fmt: skip
    if len(columns) == 1:
        return columns[0]
    return pc.binary_join_element_wise(*columns, _KEY_SEP)


def _dedupe_last(spec: TableSpec, parts: Sequence[pa.Table]) -> pa.Table:
    """Concatenate `parts`, keep the last row per key, sort by key.

    `sort_indices` is stable, so rows with equal keys stay in input order and the
    last row of each run of equal keys is the latest one.
    """
    table = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
    n = table.num_rows
    if n <= 1:
        return table
    ordered = table.take(_sort_indices(spec, table))
    last: Any = None
    for k in spec.key:
        column = ordered.column(k)
        differs = pc.not_equal(column.slice(0, n - 1), column.slice(1))
        last = differs if last is None else pc.or_(last, differs)
    if pc.all(last).as_py():
        return ordered
    keep = pa.concat_arrays([pa.chunked_array(last).combine_chunks(), pa.array([True])])
    return ordered.filter(keep)
