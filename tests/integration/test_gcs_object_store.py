"""The object store contract against real GCS semantics (fake-gcs-server), plus the
GCS-specific behaviour: key prefixes, lost answers to retried writes, error mapping."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from servo.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    TransientStorageError,
)
from servo.observability import metrics
from servo.storage import StoredObject
from servo.storage.gcs import GcsObjectStore
from tests.unit.storage.contract import ObjectStoreContract, StoreFactory

pytestmark = pytest.mark.integration


class TestGcsObjectStore(ObjectStoreContract):
    model_examples = 15

    @pytest.fixture
    def store_factory(self, gcs_client: Any, gcs_bucket: str) -> StoreFactory:
        counter = itertools.count()
        return lambda: GcsObjectStore(gcs_bucket, prefix=f"run-{next(counter)}", client=gcs_client)


@pytest.fixture
def store(gcs_client: Any, gcs_bucket: str) -> GcsObjectStore:
    return GcsObjectStore(gcs_bucket, prefix="servo/", client=gcs_client, retry_deadline=5)


def test_prefix_is_applied_and_hidden(store: GcsObjectStore, gcs_client: Any) -> None:
    store.put_if_absent("ledger/e1", b"1")
    bucket = gcs_client.bucket(store._bucket_name)
    assert [b.name for b in gcs_client.list_blobs(bucket)] == ["servo/ledger/e1"]
    assert list(store.list_prefix("")) == ["ledger/e1"]
    other = GcsObjectStore(store._bucket_name, prefix="elsewhere", client=gcs_client)
    assert other.head("ledger/e1") is None
    assert list(other.list_prefix("")) == []


def test_invalid_paths_are_rejected(store: GcsObjectStore) -> None:
    for path in ("/abs", "a//b", "a/../b", ""):
        with pytest.raises(StorageError, match="invalid object path"):
            store.put_if_absent(path, b"x")


@pytest.fixture
def lose_next_answer(gcs_client: Any) -> Iterator[Callable[[], list[str]]]:
    """Arm a fault: the next upload reaches the server, but its answer is lost."""
    session = gcs_client._http
    real_request = session.request
    armed: list[bool] = []
    lost: list[str] = []

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = real_request(method, url, *args, **kwargs)
        if armed and "uploadType=multipart" in url:
            armed.clear()
            lost.append(url)
            raise requests.ConnectionError("connection reset after the request was sent")
        return response

    def arm() -> list[str]:
        armed.append(True)
        return lost

    session.request = request
    try:
        yield arm
    finally:
        del session.request


def test_retried_create_whose_first_attempt_landed_succeeds(
    store: GcsObjectStore, lose_next_answer: Callable[[], list[str]]
) -> None:
    lost = lose_next_answer()
    generation = store.put_if_absent("manifest/1", b"mine")
    assert lost, "the fault was not injected"
    assert store.get("manifest/1") == StoredObject(b"mine", generation)


def test_retried_create_still_loses_to_other_content(
    store: GcsObjectStore, lose_next_answer: Callable[[], list[str]]
) -> None:
    store.put_if_absent("manifest/1", b"theirs")
    lost = lose_next_answer()
    with pytest.raises(ObjectExistsError):
        store.put_if_absent("manifest/1", b"mine")
    assert lost
    assert store.get("manifest/1").data == b"theirs"


def test_retried_cas_whose_first_attempt_landed_succeeds(
    store: GcsObjectStore, lose_next_answer: Callable[[], list[str]]
) -> None:
    base = store.put_if_absent("hint", b"0")
    lost = lose_next_answer()
    generation = store.put_if_generation("hint", b"1", base)
    assert lost
    assert generation != base
    assert store.get("hint") == StoredObject(b"1", generation)


def test_retried_cas_still_loses_to_another_writer(
    store: GcsObjectStore, lose_next_answer: Callable[[], list[str]]
) -> None:
    base = store.put_if_absent("hint", b"0")
    theirs = store.put_if_generation("hint", b"theirs", base)
    lost = lose_next_answer()
    with pytest.raises(PreconditionFailedError):
        store.put_if_generation("hint", b"mine", base)
    assert lost
    assert store.get("hint") == StoredObject(b"theirs", theirs)


def test_get_without_generation_header_reads_a_pinned_generation(
    store: GcsObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud.storage.blob import Blob

    generation = store.put_if_absent("x", b"payload")
    real_extract = Blob._extract_headers_from_download

    def drop_generation(blob: Any, response: Any) -> None:
        real_extract(blob, response)
        blob._properties["generation"] = None

    monkeypatch.setattr(Blob, "_extract_headers_from_download", drop_generation)
    found = store.get("x")
    assert (found.data, found.generation) == (b"payload", generation)
    store.delete("x")
    with pytest.raises(ObjectNotFoundError):
        store.get("x")


def test_missing_bucket_is_a_plain_storage_error(gcs_client: Any) -> None:
    store = GcsObjectStore("no-such-bucket", client=gcs_client, retry_deadline=0)
    with pytest.raises(StorageError, match="no-such-bucket") as info:
        store.put_if_absent("x", b"1")
    assert type(info.value) is StorageError


def test_unreachable_server_is_transient() -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": "http://127.0.0.1:9"},
    ) as client:
        store = GcsObjectStore("bucket", client=client, timeout=2, retry_deadline=0.3)
        operations = [
            lambda: store.put_if_absent("x", b"1"),
            lambda: store.put_if_generation("x", b"1", 5),
            lambda: store.get("x"),
            lambda: store.head("x"),
            lambda: store.delete("x"),
            lambda: list(store.list_prefix("")),
        ]
        for operation in operations:
            with pytest.raises(TransientStorageError, match=r"gs://bucket/"):
                operation()


def test_put_if_generation_zero_never_creates(store: GcsObjectStore) -> None:
    with pytest.raises(PreconditionFailedError):
        store.put_if_generation("new", b"x", 0)
    assert store.head("new") is None


def test_every_call_is_counted_by_operation_and_outcome(store: GcsObjectStore) -> None:
    """`servo_storage_requests_total` says what a task or a step costs in requests."""

    def count(op: str, outcome: str) -> float:
        return metrics.sample("servo_storage_requests_total", {"op": op, "outcome": outcome})

    before = {
        key: count(*key)
        for key in [("put", "ok"), ("put", "conflict"), ("get", "ok"), ("get", "absent"),
                    ("head", "absent"), ("delete", "ok"), ("list", "ok")]
    }  # fmt: skip
    store.put_if_absent("counted/a", b"1")
    with pytest.raises(ObjectExistsError):
        store.put_if_absent("counted/a", b"2")
    store.get("counted/a")
    with pytest.raises(ObjectNotFoundError):
        store.get("counted/missing")
    assert store.head("counted/missing") is None
    assert list(store.list_prefix("counted/")) == ["counted/a"]
    store.delete("counted/a")
    after = {key: count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == dict.fromkeys(before, 1.0)
