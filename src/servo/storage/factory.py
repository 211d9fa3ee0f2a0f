"""Build the object store that `StorageSettings` ask for."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

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
        A memory, local or GCS store. With ``storage.endpoint`` set, the GCS store talks
        to that endpoint (fake-gcs-server) with anonymous credentials.

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

    return GcsObjectStore(  # with an endpoint, the store is the client's only user
        settings.bucket,
        prefix=settings.prefix,
        client=None if settings.endpoint is None else _endpoint_client(settings.endpoint),
        owns_client=True,
        timeout=settings.timeout_s,
        retry_deadline=settings.retry_deadline_s,
    )


def _endpoint_client(endpoint: str) -> Any:
    """An anonymous ``google.cloud.storage.Client`` talking to `endpoint`.

    The project is only a label here: object calls do not send it.

    google-cloud-storage starts a thread per bucket that fetches its metadata for the
    library's own telemetry; against a local server it outlives the store and keeps
    retrying, so it is turned off (unless the environment already decided).
    """
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.storage import Client
    except ImportError as exc:
        raise ConfigError(
            "storage.backend 'gcs' needs google-cloud-storage: pip install 'servo[gcp]'"
        ) from exc

    os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
    return Client(
        project="servo",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )
