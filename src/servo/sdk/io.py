"""Asset values in the object store: Parquet for tables, JSON for plain data, pickle last.

A value is written to ``outputs/{asset_key}/{partition_key}/{run_id}.{ext}``
(``__all__`` stands for "no partition"; a retry's attempt N > 1 writes
``{run_id}-{N}.{ext}``); the location, format, size and row count go into
`TaskFinished`, and downstream tasks read their inputs from there.

Writes are create-only: an attempt never replaces another attempt's value, so an
attempt the engine gave up on cannot overwrite the value of the attempt that won
by finishing late. If the same attempt runs twice (a redelivered message), the
first value written stays and is the one reported.

Small values travel inline (ADR 0021): a JSON value whose text is at most
`INLINE_MAX_BYTES` bytes is not written to a file at all; its location is
``inline:{json text}``, which `TaskFinished` carries into the ledger (where the
value is as durable as the event that reports it) and `read_value` decodes without
touching the store. Two files and two directories per task cost far more than the
few bytes such a value adds to its events; anything bigger, or not JSON, is a file.

Formats:
- ``parquet:arrow`` / ``parquet:pandas`` / ``parquet:polars`` — tables; read back as
  the same kind of object that was written.
- ``json`` — data made only of dicts with string keys, lists, strings, ints, finite
  floats, booleans and None, which round-trips exactly.
- ``pickle`` — anything else (trusted code only: it is the user's own value).

Errors: a value no format can store (a generator, a lock) raises
`UnstorableValueError`, which names the asset and the types that can be stored; a
stored value that cannot be decoded (a truncated or damaged file) raises
`CorruptValueError`, which names the file, its asset and the way out
(re-materialize that asset). Neither is retried: running again cannot fix them.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servo.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ServoError,
    StorageError,
    ValueRemovedError,
)
from servo.storage.base import ObjectStore

NO_PARTITION = "__all__"
#: Locations of values carried in the location itself (ADR 0021).
INLINE_PREFIX = "inline:"
#: Largest JSON text (bytes) the worker carries inline by default.
INLINE_MAX_BYTES = 256
_EXTENSIONS = {"json": "json", "pickle": "pkl"}
_STORABLE = (
    "Servo stores Arrow, pandas and polars tables (as Parquet), JSON-able data (dicts "
    "with string keys, lists, strings, ints, finite floats, booleans, None) and "
    "picklable objects"
)


class UnstorableValueError(ServoError):
    """An asset's value that no format can store; the message names the asset."""

    #: Not retried (`servo.resilience.retry.classify`): the same code returns the same.
    error_kind = "validation"


class CorruptValueError(StorageError):
    """A stored value that cannot be decoded; the message names the file and asset."""

    #: Not retried: reading the same bytes again fails again.
    error_kind = "validation"


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


def encode_value(value: Any, asset_key: str | None = None) -> EncodedValue:
    """Choose the format for `value` and serialise it.

    Raises:
        UnstorableValueError: no format can store `value` (named `asset_key`).
    """
    try:
        return _encode(value)
    except Exception as exc:
        owner = "the value" if asset_key is None else f"the value of asset {asset_key!r}"
        kind = type(value).__module__ + "." + type(value).__qualname__
        kind = kind.removeprefix("builtins.")
        raise UnstorableValueError(
            f"storing {owner} failed: a {kind} cannot be stored "
            f"({type(exc).__name__}: {exc}). {_STORABLE}; return one of those "
            "(e.g. list(...) of a generator, the data rather than a lock or connection)"
        ) from exc


def _encode(value: Any) -> EncodedValue:
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


def output_path(
    asset_key: str, partition_key: str | None, run_id: str, fmt: str, attempt: int = 1
) -> str:
    """The store path of one attempt's materialization."""
    ext = "parquet" if fmt.startswith("parquet:") else _EXTENSIONS[fmt]
    name = run_id if attempt <= 1 else f"{run_id}-{attempt}"
    return f"outputs/{asset_key}/{partition_key or NO_PARTITION}/{name}.{ext}"


def is_inline(location: str) -> bool:
    """Whether `location` carries its value itself rather than naming a stored file."""
    return location.startswith(INLINE_PREFIX)


def inline_location(encoded: EncodedValue, max_bytes: int) -> str | None:
    """The inline location of `encoded`, or None when it must be a file.

    Only JSON is inlined: its text is valid UTF-8 and reads back exactly, so the
    location stays a plain string in events, projections and the catalog.
    """
    if encoded.format != "json" or len(encoded.data) > max_bytes:
        return None
    return INLINE_PREFIX + encoded.data.decode("utf-8")


def write_value(
    store: ObjectStore,
    asset_key: str,
    partition_key: str | None,
    run_id: str,
    value: Any,
    attempt: int = 1,
    *,
    inline_max_bytes: int = 0,
) -> tuple[str, EncodedValue]:
    """Store `value` create-only; returns (location, encoded) of what the path holds.

    Args:
        inline_max_bytes: a JSON value this small (or smaller) is returned inline
            and nothing is written (0: always a file).
    """
    encoded = encode_value(value, asset_key)
    inline = inline_location(encoded, inline_max_bytes)
    if inline is not None:
        return inline, encoded
    path = output_path(asset_key, partition_key, run_id, encoded.format, attempt)
    try:
        store.put_if_absent(path, encoded.data)
    except ObjectExistsError:
        existing = store.get(path).data  # the same attempt ran before: keep its value
        rows = decode_row_count(existing, encoded.format)
        return path, EncodedValue(existing, encoded.format, rows)
    return path, encoded


def decode_row_count(data: bytes, fmt: str) -> int | None:
    """Rows of a stored value (tables and lists), else None."""
    value = decode_value(data, fmt)
    if isinstance(value, list | tuple):
        return len(value)
    rows = getattr(value, "num_rows", None) or getattr(value, "height", None)
    if rows is None and hasattr(value, "shape"):
        rows = value.shape[0]
    return rows if isinstance(rows, int) else None


def read_value(store: ObjectStore, location: str, fmt: str, asset_key: str | None = None) -> Any:
    """Load a stored value.

    Args:
        store: the object store.
        location: the value's path in the store.
        fmt: its format.
        asset_key: the asset it is a value of (default: read from the location).

    Raises:
        CorruptValueError: the stored bytes cannot be decoded as `fmt`.
        ValueRemovedError: ``servo gc`` removed it (the message names the gc record).
        ObjectNotFoundError: nothing is stored at `location`.
    """
    if is_inline(location):
        data = location[len(INLINE_PREFIX) :].encode("utf-8")
        try:
            return decode_value(data, fmt)
        except StorageError:
            raise
        except Exception as exc:
            raise CorruptValueError(
                f"the inline value of asset {asset_key or '?'!r} cannot be read as {fmt} "
                f"({type(exc).__name__}: {exc}); re-materialize it"
            ) from exc
    try:
        data = store.get(location).data
    except ObjectNotFoundError as exc:
        raise _removed(store, location) or exc from None
    try:
        return decode_value(data, fmt)
    except (ImportError, AttributeError):  # a pickled class this process cannot import
        raise
    except StorageError:
        raise
    except Exception as exc:
        asset = asset_key or _asset_of(location)
        raise CorruptValueError(
            f"the stored value of asset {asset!r} cannot be read: {location} "
            f"({fmt}, {len(data)} bytes) is corrupt or truncated "
            f"({type(exc).__name__}: {exc}); re-materialize it: servo materialize {asset}"
        ) from exc


def _asset_of(location: str) -> str:
    parts = location.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "outputs" else location


def _removed(store: ObjectStore, location: str) -> ValueRemovedError | None:
    """The error for a value `servo gc` removed, or None when no gc record lists it."""
    from servo.storage.gc_records import removal_of

    removal = removal_of(store, location)
    if removal is None:
        return None
    when = datetime.fromtimestamp(removal.created_at / 1e6, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ValueRemovedError(
        f"{location}: the value of asset {removal.asset_key!r} from run {removal.run_id} was "
        f"removed by 'servo gc' on {when} (record {removal.record}); materialize "
        f"{removal.asset_key!r} again to get a value"
    )
