"""`servo.testing.fake_gcs` starts fake-gcs-server, and `open_store` reaches it through
``storage.endpoint`` with create-only semantics intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo.config.settings import StorageSettings
from servo.errors import ObjectExistsError
from servo.storage.factory import open_store
from servo.storage.gcs import GcsObjectStore
from servo.testing.fake_gcs import FakeGcsError, FakeGcsServer

pytestmark = pytest.mark.integration


def test_a_launched_server_serves_a_store_opened_through_the_settings(tmp_path: Path) -> None:
    try:
        server = FakeGcsServer()
        url = server.start()
    except FakeGcsError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        assert server.url == url
        assert url.startswith("http://127.0.0.1:")
        server.create_bucket("servo-launcher")
        with pytest.raises(FakeGcsError, match="servo-launcher"):
            server.create_bucket("servo-launcher")
        settings = StorageSettings(backend="gcs", bucket="servo-launcher", endpoint=url)
        store = open_store(settings, tmp_path)
        assert isinstance(store, GcsObjectStore)
        try:
            first = store.put_if_absent("ledger/0001", b"one")
            with pytest.raises(ObjectExistsError):
                store.put_if_absent("ledger/0001", b"two")
            assert store.get("ledger/0001").data == b"one"
            assert store.get("ledger/0001").generation == first
        finally:
            store.close()
    finally:
        server.stop()
    with pytest.raises(FakeGcsError, match="not running"):
        _ = server.url
    server.stop()  # idempotent


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = FakeGcsServer(tmp_path / "no-such-binary")
    with pytest.raises(FakeGcsError, match="cannot start fake-gcs-server"):
        server.start()
