"""`GcsObjectStore` pieces that need no server: lazy import, error classification."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from google.api_core import exceptions as api

from servo.errors import (
    ConfigError,
    ObjectNotFoundError,
    StorageError,
    TransientStorageError,
)
from servo.storage import ObjectStore, gcs


def test_importing_the_module_does_not_import_the_client() -> None:
    code = "import sys, servo.storage.gcs; print('google.cloud.storage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.cloud

    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    monkeypatch.delattr(google.cloud, "storage", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'servo\[gcp\]'"):
        gcs.GcsObjectStore("bucket")


@pytest.mark.parametrize(
    "exc",
    [
        api.TooManyRequests("slow down"),
        api.InternalServerError("boom"),
        api.ServiceUnavailable("down"),
        api.GatewayTimeout("late"),
        api.RetryError("deadline", cause=RuntimeError("x")),
        requests.ConnectionError("reset"),
        requests.Timeout("timeout"),
        ConnectionResetError("reset"),
    ],
)
def test_transient_failures(exc: Exception) -> None:
    assert gcs._is_transient(exc)
    store = _store()
    error = store._translate(exc, "read", "ledger/e1")
    assert isinstance(error, TransientStorageError)
    assert "ledger/e1" in str(error)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (api.NotFound("gone"), ObjectNotFoundError),
        (api.Forbidden("no"), StorageError),
        (api.Unauthorized("who"), StorageError),
        (api.BadRequest("bad"), StorageError),
    ],
)
def test_permanent_failures(exc: Exception, expected: type[StorageError]) -> None:
    assert not gcs._is_transient(exc)
    error = _store()._translate(exc, "read", "ledger/e1")
    assert type(error) is expected
    assert "ledger/e1" in str(error)


def test_is_an_object_store() -> None:
    assert isinstance(_store(), ObjectStore)


def test_driver_errors_cover_what_the_client_raises() -> None:
    errors = gcs._driver_errors()
    for exc in (api.NotFound("x"), requests.ConnectionError("x"), OSError("x")):
        assert isinstance(exc, errors)
    assert not isinstance(ValueError("a bug"), errors)


def _store() -> gcs.GcsObjectStore:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials())
    return gcs.GcsObjectStore("bucket", prefix="p", client=client)
