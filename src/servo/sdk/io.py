"""Asset values in the object store: Parquet for tables, JSON for plain data, pickle last.

A value is written to ``outputs/{asset_key}/{partition_key}/{run_id}.{ext}``
(``__all__`` stands for "no partition"); the location, format, size and row count
go into `TaskFinished`, and downstream tasks read their inputs from there.

Formats:
- ``parquet:arrow`` / ``parquet:pandas`` / ``parquet:polars`` — tables; read back as
  the same kind of object that was written.
- ``json`` — data made only of dicts with string keys, lists, strings, ints, finite
  floats, booleans and None, which round-trips exactly.
- ``pickle`` — anything else (trusted code only: it is the user's own value).
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import dataclass
from typing import Any

from servo.errors import ObjectExistsError, StorageError
from servo.storage.base import ObjectStore

NO_PARTITION = "__all__"
_EXTENSIONS = {"json": "json", "pickle": "pkl"}


@dataclass(frozen=True, slots=True)
class EncodedValue:
    """A value ready to store.

    Attributes:
        data: the bytes to write.
        format: one of the formats in the module docstring.
        row_count: rows for tables, else None.
    """

    data: bytes
    format: str
    row_count: int | None


def _is_plain(value: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if type(value) is list:
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _table_kind(value: Any) -> str | None:
    module = type(value).__module__.split(".", 1)[0]
    name = type(value).__name__
    if module == "pyarrow" and name == "Table":
        return "arrow"
    if module == "pandas" and name == "DataFrame":
        return "pandas"
    if module == "polars" and name == "DataFrame":
        return "polars"
    return None


def encode_value(value: Any) -> EncodedValue:
    """Choose the format for `value` and serialise it."""
    kind = _table_kind(value)
    if kind is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if kind == "pandas":
            table = pa.Table.from_pandas(value)
        elif kind == "polars":
            table = value.to_arrow()
        else:
            table = value
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return EncodedValue(sink.getvalue(), f"parquet:{kind}", table.num_rows)
    if _is_plain(value):
        data = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
        rows = len(value) if isinstance(value, list) else None
        return EncodedValue(data, "json", rows)
    rows = len(value) if isinstance(value, list | tuple) else None
    return EncodedValue(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), "pickle", rows)


def decode_value(data: bytes, fmt: str) -> Any:
    """Read back a value written by `encode_value`.

    Raises:
        StorageError: the format is unknown.
    """
    if fmt == "json":
        return json.loads(data)
    if fmt == "pickle":
        return pickle.loads(data)
    if fmt.startswith("parquet:"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        kind = fmt.split(":", 1)[1]
        if kind == "pandas":
            return table.to_pandas()
        if kind == "polars":
            import polars

            return polars.from_arrow(table)
        return table
    raise StorageError(f"unknown value format {fmt!r}; this Servo reads json, pickle, parquet:*")


def output_path(asset_key: str, partition_key: str | None, run_id: str, fmt: str) -> str:
    """The store path of one materialization."""
    ext = "parquet" if fmt.startswith("parquet:") else _EXTENSIONS[fmt]
    return f"outputs/{asset_key}/{partition_key or NO_PARTITION}/{run_id}.{ext}"


def write_value(
    store: ObjectStore, asset_key: str, partition_key: str | None, run_id: str, value: Any
) -> tuple[str, EncodedValue]:
    """Store `value`; returns (location, encoded). A retried attempt replaces the object."""
    encoded = encode_value(value)
    path = output_path(asset_key, partition_key, run_id, encoded.format)
    try:
        store.put_if_absent(path, encoded.data)
    except ObjectExistsError:
        generation = store.head(path)
        if generation is None:
            store.put_if_absent(path, encoded.data)
        else:
            store.put_if_generation(path, encoded.data, generation)
    return path, encoded


def read_value(store: ObjectStore, location: str, fmt: str) -> Any:
    """Load a stored value."""
    return decode_value(store.get(location).data, fmt)
