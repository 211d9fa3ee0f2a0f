"""Asset values round-trip through the store in the right format."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servo.errors import StorageError
from servo.sdk.io import decode_value, encode_value, read_value, write_value
from servo.storage.memory import MemoryObjectStore

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(plain)
def test_plain_data_is_json_and_round_trips_exactly(value: Any) -> None:
    encoded = encode_value(value)
    assert encoded.format == "json"
    assert decode_value(encoded.data, "json") == value


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1: "a"}, dt.date(2026, 1, 1), float("nan"), {"a": {3}}],
)
def test_values_json_cannot_hold_exactly_are_pickled(value: Any) -> None:
    encoded = encode_value(value)
    assert encoded.format == "pickle"
    decoded = decode_value(encoded.data, "pickle")
    assert decoded == value or (value != value and decoded != decoded)


def test_arrow_tables_are_parquet_with_row_count() -> None:
    table = pa.table({"region": ["eu", "us"], "revenue": [1.5, 2.0]})
    encoded = encode_value(table)
    assert (encoded.format, encoded.row_count) == ("parquet:arrow", 2)
    assert decode_value(encoded.data, encoded.format).equals(table)


def test_write_then_read_and_attempts_never_overwrite_each_other() -> None:
    store = MemoryObjectStore()
    location, encoded = write_value(store, "orders", None, "r1", [1, 2, 3])
    assert location == "outputs/orders/__all__/r1.json"
    assert (encoded.row_count, read_value(store, location, "json")) == (3, [1, 2, 3])
    retry, _ = write_value(store, "orders", None, "r1", [4], attempt=2)
    assert retry == "outputs/orders/__all__/r1-2.json"
    # The same attempt delivered twice: the first value stays and is reported.
    again, encoded = write_value(store, "orders", None, "r1", [9, 9], attempt=1)
    assert again == location and encoded.row_count == 3
    assert read_value(store, location, "json") == [1, 2, 3]
    assert read_value(store, retry, "json") == [4]


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match="unknown value format 'xml'"):
        decode_value(b"", "xml")
