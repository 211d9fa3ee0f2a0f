"""Build the object store that `StorageSettings` ask for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servo.errors import ConfigError
from servo.storage.local import LocalObjectStore
from servo.storage.memory import MemoryObjectStore

if TYPE_CHECKING:
    from pathlib import Path

    from servo.config.settings import StorageSettings
    from servo.storage.base import ObjectStore


def open_store(settings: StorageSettings, home: Path) -> ObjectStore:
    """Open the configured object store.

    Args:
        settings: the ``storage`` settings section.
        home: the Servo home; the local backend keeps its objects in
            ``home / settings.prefix`` (an absolute prefix is used as it is).

    Returns:
        A memory, local or GCS store.

    Raises:
        ConfigError: the GCS backend without a bucket, or without its extra installed.
    """
    if settings.backend == "memory":
        return MemoryObjectStore()
    if settings.backend == "local":
        return LocalObjectStore(home / settings.prefix, fsync=settings.fsync)
    if not settings.bucket:
        raise ConfigError(
            "storage.bucket (or SERVO_STORAGE_BUCKET): required when storage.backend is 'gcs'"
        )
    from servo.storage.gcs import GcsObjectStore

    return GcsObjectStore(settings.bucket, prefix=settings.prefix)
