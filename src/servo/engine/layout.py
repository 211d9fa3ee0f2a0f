"""Projection file layout: where one publish writes its files, and when deltas merge.

Every file of a publish attempt is named after the generation it is meant for and a
ULID fresh for the attempt, so a retry (after a lost race or a crash) never collides
with an earlier attempt's files::

    projections/{tenant}/{ws}/tables/{table}/{generation:020d}-{ulid}-d.parquet  L0 delta
    projections/{tenant}/{ws}/tables/{table}/{generation:020d}-{ulid}-b.parquet  base

Files are created with `put_if_absent` and never change (the compactor is their only
writer). A table is its base merged with its deltas, later deltas winning per key;
once it has `max_l0_files` deltas they are merged into a new base in the same publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from servo.engine.ids import new_ulid
from servo.engine.manifest import TableFiles
from servo.engine.projections import merge, read_table_file, rows_to_table, write_table_file
from servo.engine.schema import TableSpec
from servo.engine.snapshot import load_table
from servo.storage.base import ObjectStore


class GenerationWriter:
    """Writes the projection files of one publish attempt of one generation.

    Args:
        store: the object store.
        tables_prefix: ``projections/{tenant}/{ws}/tables/``.
        generation: the generation the files are for.
    """

    def __init__(self, store: ObjectStore, tables_prefix: str, generation: int) -> None:
        self._store = store
        self._prefix = tables_prefix
        self._tag = f"{generation:020d}-{new_ulid()}"
        #: Bytes of each file written, by path, in writing order.
        self.written: dict[str, int] = {}

    @property
    def bytes_written(self) -> int:
        """Parquet bytes of every file written so far."""
        return sum(self.written.values())

    def add_delta(
        self, spec: TableSpec, files: TableFiles, rows: Sequence[Any], max_l0_files: int
    ) -> TableFiles:
        """Write `rows` (one per key) as a delta of `files`; merge into a base if due.

        Returns:
            The table's files after this publish.
        """
        delta = self._write(spec, "d", rows_to_table(spec, rows))
        files = TableFiles(files.base, (*files.deltas, delta))
        if len(files.deltas) >= max_l0_files:
            files = TableFiles(self._write(spec, "b", load_table(self._store, spec, files)), ())
        return files

    def add_base(self, spec: TableSpec, rows: Sequence[Any]) -> TableFiles:
        """Write `rows` (one per key) as the table's whole content."""
        return TableFiles(self._write(spec, "b", rows_to_table(spec, rows)), ())

    def add_rows(self, spec: TableSpec, kind: str, rows: Sequence[Any]) -> str:
        """Write `rows` as one file of `kind` (a history tier); returns its path."""
        return self._write(spec, kind, rows_to_table(spec, rows))

    def add_merged(self, spec: TableSpec, kind: str, paths: Sequence[str]) -> str:
        """Write the files `paths` (oldest first) merged into one file of `kind`."""
        tables = [read_table_file(self._store, path, spec) for path in paths]
        return self._write(spec, kind, merge(spec, None, tables))

    def _write(self, spec: TableSpec, kind: str, table: pa.Table) -> str:
        path = f"{self._prefix}{spec.name}/{self._tag}-{kind}.parquet"
        self.written[path] = write_table_file(self._store, path, table)
        return path
