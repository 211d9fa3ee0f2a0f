"""Projection files: deterministic Parquet, the by-path cache and key merges."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servo.engine import projections
from servo.engine.projections import (
    canonical_bytes,
    merge,
    read_table_file,
    write_table_file,
)
from servo.engine.schema import ATTEMPTS, DEP_SATISFACTION, AttemptRow, DepRow
from servo.errors import EngineError, ObjectExistsError
from servo.storage.base import StoredObject
from servo.storage.memory import MemoryObjectStore


class CountingStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, path: str) -> StoredObject:
        self.gets += 1
        return super().get(path)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    projections.clear_cache()
    yield
    projections.set_cache_limit(projections.DEFAULT_CACHE_BYTES)


def deps(*rows: tuple[str, str, str | None]) -> pa.Table:
    """dep_satisfaction rows (task, upstream, resolution) of run r1, in the order given."""
    made = [DepRow("r1", task, up, "data", res) for task, up, res in rows]
    columns = {f.name: [getattr(r, f.name) for r in made] for f in DEP_SATISFACTION.schema}
    return pa.table(columns, schema=DEP_SATISFACTION.schema)


def content(table: pa.Table) -> list[tuple[str, str, str | None]]:
    return [
        (r.task_key, r.upstream_task_key, r.resolution) for r in DEP_SATISFACTION.from_arrow(table)
    ]


def test_later_deltas_win_and_result_is_sorted() -> None:
    base = deps(("a", "x", None), ("b", "x", None), ("c", "x", None))
    d1 = deps(("b", "x", "SUCCESS"), ("d", "x", None))
    d2 = deps(("b", "x", "FAILED"), ("a", "x", "SUCCESS"))

    merged = merge(DEP_SATISFACTION, base, [d1, d2])

    assert content(merged) == [
        ("a", "x", "SUCCESS"),
        ("b", "x", "FAILED"),
        ("c", "x", None),
        ("d", "x", None),
    ]


def test_merge_edge_cases() -> None:
    empty = merge(DEP_SATISFACTION, None, [])
    assert empty.num_rows == 0 and empty.schema.equals(DEP_SATISFACTION.schema)
    unsorted = deps(("b", "x", None), ("a", "x", None))
    assert content(merge(DEP_SATISFACTION, unsorted, [])) == [("a", "x", None), ("b", "x", None)]
    assert content(merge(DEP_SATISFACTION, None, [unsorted])) == [
        ("a", "x", None),
        ("b", "x", None),
    ]
    # Within one delta the later row wins.
    dup = deps(("a", "x", "FAILED"), ("a", "x", "SUCCESS"))
    assert content(merge(DEP_SATISFACTION, None, [dup])) == [("a", "x", "SUCCESS")]


def test_merge_on_a_key_with_an_integer_column() -> None:
    def attempt(n: int, aid: str, worker: str) -> AttemptRow:
        return AttemptRow("r1", "t", n, aid, worker_id=worker)

    base = ATTEMPTS.to_arrow([attempt(1, "A", "w1"), attempt(10, "A", "w1"), attempt(2, "A", "w1")])
    delta = ATTEMPTS.to_arrow([attempt(10, "A", "w2"), attempt(1, "B", "w2")])
    rows = ATTEMPTS.from_arrow(merge(ATTEMPTS, base, [delta]))
    assert [(r.attempt, r.attempt_id, r.worker_id) for r in rows] == [
        (1, "A", "w1"),
        (1, "B", "w2"),
        (2, "A", "w1"),
        (10, "A", "w2"),
    ]


keys = st.tuples(st.sampled_from("abcd"), st.sampled_from("xy"))
tables = st.lists(st.tuples(keys, st.sampled_from([None, "SUCCESS", "FAILED"])), max_size=8)


@settings(max_examples=60, deadline=None)
@given(base=tables, deltas=st.lists(tables, max_size=4), split=st.integers(0, 4))
def test_merge_is_last_writer_wins_and_associative(
    base: list[tuple[tuple[str, str], str | None]],
    deltas: list[list[tuple[tuple[str, str], str | None]]],
    split: int,
) -> None:
    unique_base = {k: v for k, v in base}
    base_table = deps(*((t, u, v) for (t, u), v in unique_base.items()))
    delta_tables = [deps(*((t, u, v) for (t, u), v in d)) for d in deltas]
    expected = dict(unique_base)
    for d in deltas:
        expected.update(dict(d))

    merged = merge(DEP_SATISFACTION, base_table, delta_tables)
    stepwise = merge(
        DEP_SATISFACTION,
        merge(DEP_SATISFACTION, base_table, delta_tables[:split]),
        delta_tables[split:],
    )

    assert content(merged) == [(t, u, v) for (t, u), v in sorted(expected.items())]
    assert canonical_bytes(DEP_SATISFACTION, merged) == canonical_bytes(DEP_SATISFACTION, stepwise)


def test_canonical_bytes_depend_only_on_content() -> None:
    rows = deps(("a", "x", None), ("b", "y", "SUCCESS"), ("c", "x", None))
    shuffled = pa.concat_tables([rows.slice(2), rows.slice(0, 1), rows.slice(1, 1)])
    assert shuffled.column(0).num_chunks == 3
    assert canonical_bytes(DEP_SATISFACTION, rows) == canonical_bytes(DEP_SATISFACTION, shuffled)
    other = deps(("a", "x", None), ("b", "y", "FAILED"), ("c", "x", None))
    assert canonical_bytes(DEP_SATISFACTION, rows) != canonical_bytes(DEP_SATISFACTION, other)


def test_write_then_read_round_trips_and_is_create_only() -> None:
    store = CountingStore()
    table = deps(("a", "x", None), ("b", "y", "SUCCESS"))
    size = write_table_file(store, "p/t.parquet", table)
    assert size == len(store.get("p/t.parquet").data)
    with pytest.raises(ObjectExistsError):
        write_table_file(store, "p/t.parquet", table)

    projections.clear_cache()
    store.gets = 0
    assert read_table_file(store, "p/t.parquet", DEP_SATISFACTION).equals(table)
    assert read_table_file(store, "p/t.parquet", DEP_SATISFACTION).equals(table)
    assert store.gets == 1  # the second read came from the by-path cache


def test_written_files_are_cached_for_the_writer() -> None:
    store = CountingStore()
    write_table_file(store, "p/t.parquet", deps(("a", "x", None)))
    store.gets = 0
    read_table_file(store, "p/t.parquet", DEP_SATISFACTION)
    assert store.gets == 0


def test_cache_is_bounded_by_bytes() -> None:
    store = CountingStore()
    table = deps(*((f"t{i}", "x", None) for i in range(100)))
    projections.set_cache_limit(table.nbytes * 2 + 1)
    for i in range(5):
        write_table_file(store, f"p/{i}.parquet", table)
    files, cached_bytes = projections.cache_stats()
    assert files == 2 and cached_bytes <= table.nbytes * 2 + 1
    store.gets = 0
    read_table_file(store, "p/0.parquet", DEP_SATISFACTION)  # evicted: read again
    assert store.gets == 1


def test_a_file_of_another_schema_is_an_error_naming_it() -> None:
    store = MemoryObjectStore()
    store.put_if_absent("p/junk.parquet", b"not parquet")
    with pytest.raises(EngineError, match=r"p/junk\.parquet"):
        read_table_file(store, "p/junk.parquet", DEP_SATISFACTION)
    write_table_file(store, "p/deps.parquet", deps(("a", "x", None)))
    projections.clear_cache()
    with pytest.raises(EngineError, match=r"p/deps\.parquet"):
        read_table_file(store, "p/deps.parquet", ATTEMPTS)


@pytest.mark.parametrize("count", [0, 1, 5])
def test_rows_to_table_matches_the_schema_conversion(count: int) -> None:
    rows = [
        AttemptRow("r1", f"t{(7 * i) % 5}", i % 3 + 1, f"A{i}", worker_id=None if i % 2 else "w",
                   retryable=bool(i % 2), duration_s=i / 3, output_size=i)
        for i in range(count)
    ]  # fmt: skip
    expected = ATTEMPTS.to_arrow(rows)
    assert projections.rows_to_table(ATTEMPTS, rows).equals(expected)
    assert canonical_bytes(ATTEMPTS, projections.rows_to_table(ATTEMPTS, rows)) == (
        canonical_bytes(ATTEMPTS, expected)
    )
