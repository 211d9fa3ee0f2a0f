"""Values that cannot be stored and stored values that cannot be read say so plainly."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest

from servo.resilience.retry import ErrorKind, classify
from servo.sdk.io import CorruptValueError, UnstorableValueError, read_value, write_value
from servo.storage.memory import MemoryObjectStore


def numbers() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("value", "kind"), [(numbers(), "generator"), (threading.Lock(), "_thread.lock")]
)
def test_an_unstorable_value_names_the_step_the_asset_and_what_can_be_stored(
    value: Any, kind: str
) -> None:
    with pytest.raises(UnstorableValueError) as caught:
        write_value(MemoryObjectStore(), "events", None, "r1", value)
    message = str(caught.value)
    assert message.startswith(f"storing the value of asset 'events' failed: a {kind} ")
    for storable in ("Arrow, pandas and polars tables", "JSON-able data", "picklable objects"):
        assert storable in message
    assert classify(caught.value) is ErrorKind.VALIDATION  # not retried


@pytest.mark.parametrize(
    "value", [[1, 2, 3], {1, 2, 3}, pa.table({"x": list(range(100))})], ids=str
)
def test_a_truncated_value_names_the_file_the_asset_and_the_way_out(value: Any) -> None:
    store = MemoryObjectStore()
    location, encoded = write_value(store, "orders", None, "r1", value)
    broken = MemoryObjectStore()
    broken.put_if_absent(location, encoded.data[: len(encoded.data) // 2])
    with pytest.raises(CorruptValueError) as caught:
        read_value(broken, location, encoded.format)
    message = str(caught.value)
    assert "asset 'orders'" in message and location in message
    assert "corrupt or truncated" in message and "servo materialize orders" in message
    assert classify(caught.value) is ErrorKind.VALIDATION
