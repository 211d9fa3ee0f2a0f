"""`open_store` picks the backend named by the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo.config.settings import StorageSettings
from servo.errors import ConfigError
from servo.storage import LocalObjectStore, MemoryObjectStore
from servo.storage.factory import open_store


def test_memory() -> None:
    assert isinstance(
        open_store(StorageSettings(backend="memory"), Path("unused")), MemoryObjectStore
    )


def test_local_defaults_to_the_home_directory(tmp_path: Path) -> None:
    store = open_store(StorageSettings(), tmp_path)
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path


def test_the_local_store_is_durable_by_default(tmp_path: Path) -> None:
    """What a run recorded survives a power loss unless the user opts out (ADR 0017)."""
    assert "fsync=True" in repr(open_store(StorageSettings(), tmp_path))
    assert "fsync=False" in repr(open_store(StorageSettings(fsync=False), tmp_path))


def test_local_root_is_home_slash_prefix(tmp_path: Path) -> None:
    store = open_store(StorageSettings(backend="local", prefix="data", fsync=False), tmp_path)
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "data"
    store.put_if_absent("k", b"v")
    assert (tmp_path / "data" / "k").read_bytes() == b"v"


def test_gcs_needs_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.bucket.*SERVO_STORAGE_BUCKET"):
        open_store(StorageSettings(backend="gcs"), tmp_path)


def test_gcs_with_a_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from servo.storage.gcs import GcsObjectStore

    # The emulator variable makes the default client anonymous; nothing is contacted.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    store = open_store(StorageSettings(backend="gcs", bucket="b", prefix="servo"), tmp_path)
    assert isinstance(store, GcsObjectStore)
    assert repr(store) == "GcsObjectStore(bucket='b', prefix='servo/')"
    store.close()


def test_gcs_timeouts_come_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    settings = StorageSettings(backend="gcs", bucket="b", timeout_s=7.5, retry_deadline_s=0)
    store = open_store(settings, tmp_path)
    try:
        assert (store._timeout, store._retry_deadline) == (7.5, 0)  # type: ignore[attr-defined]
    finally:
        store.close()  # type: ignore[attr-defined]
