"""Small JSON values travel inline in their location (ADR 0021); the rest are files."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servo.sdk.io import (
    INLINE_MAX_BYTES,
    CorruptValueError,
    encode_value,
    inline_location,
    is_inline,
    read_value,
    write_value,
)
from servo.storage.memory import MemoryObjectStore

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(plain)
def test_an_inlined_value_reads_back_exactly_and_writes_nothing(value: Any) -> None:
    store = MemoryObjectStore()
    location, encoded = write_value(store, "a", None, "r1", value, inline_max_bytes=1 << 20)
    assert is_inline(location) and encoded.format == "json"
    assert list(store.list_prefix("")) == []
    assert read_value(store, location, "json") == value


def test_only_small_json_is_inlined() -> None:
    store = MemoryObjectStore()
    big = list(range(200))
    assert len(encode_value(big).data) > INLINE_MAX_BYTES
    location, _ = write_value(store, "a", None, "r1", big, inline_max_bytes=INLINE_MAX_BYTES)
    assert location == "outputs/a/__all__/r1.json"
    pickled, encoded = write_value(store, "b", None, "r1", (1, 2), inline_max_bytes=1 << 20)
    assert encoded.format == "pickle" and pickled == "outputs/b/__all__/r1.pkl"
    assert inline_location(encode_value(1), 0) is None  # the default writes files
    assert write_value(store, "c", None, "r1", 1)[0] == "outputs/c/__all__/r1.json"


def test_a_damaged_inline_value_names_its_asset() -> None:
    with pytest.raises(CorruptValueError, match="'a'"):
        read_value(MemoryObjectStore(), "inline:[1,", "json", "a")
