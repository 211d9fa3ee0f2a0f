"""Google Cloud Storage object store: the scale-out backend.

Semantics map one to one onto GCS preconditions:

- ``put_if_absent`` uploads with ``if_generation_match=0`` (create-only);
  ``put_if_generation`` with ``if_generation_match=generation`` (compare-and-swap).
  A generation outside 1..2**63-1 never matches (GCS would read 0 as "create").
- The generation is the GCS object generation. ``get`` takes it from the
  ``x-goog-generation`` header of the very response that carried the bytes, so data and
  generation always agree in one request. Should a server omit the header, ``get``
  reads the metadata and downloads that pinned generation instead.

Errors from google-cloud-storage, google-api-core, google-auth and requests are
translated here, naming the path: 412 becomes `ObjectExistsError` (create) or
`PreconditionFailedError` (CAS), 404 `ObjectNotFoundError`, 408/429/5xx, connection
errors, timeouts and checksum mismatches `TransientStorageError`, anything else
`StorageError`.

Retries: the client library retries transient failures within ``retry_deadline``
seconds (conditional writes included: the precondition makes them safe). A retried
write whose first attempt did land but whose answer was lost sees its own write as a
412. So when a conditional write that was retried fails its precondition, the store
reads the object back: if it holds exactly our bytes, the write is reported as ours
(with the stored generation); otherwise the conflict stands. The one ambiguity left is
another writer storing byte-identical content in that window, which yields the same
stored state, so it is harmless. Once ``retry_deadline`` is spent the error surfaces as
`TransientStorageError`; further retries are the caller's policy.

``google-cloud-storage`` is imported when a store is built, not when this module is
imported, so ``import servo.storage.gcs`` is cheap without the ``gcp`` extra.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from servo.errors import (
    ConfigError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    TransientStorageError,
)
from servo.observability import metrics
from servo.storage._paths import check_path, check_prefix
from servo.storage.base import StoredObject

if TYPE_CHECKING:
    from google.api_core.retry import Retry

_CONTENT_TYPE = "application/octet-stream"
_PINNED_READ_ATTEMPTS = 5

REQUESTS = metrics.counter(
    "servo_storage_requests_total",
    "Object-store calls of the GCS backend, by operation and outcome (ok, absent, "
    "conflict, error): what a task or a reconcile step costs in requests.",
    ["op", "outcome"],
)


def _status(exc: BaseException) -> int | None:
    """The HTTP status carried by a driver error, if any."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: 408, 429, 5xx, connection trouble, timeouts."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

    if isinstance(exc, api.RetryError):
        return True
    if isinstance(exc, api.GoogleAPICallError | InvalidResponse):
        status = _status(exc)
        return status is not None and (status in (408, 429) or status >= 500)
    if isinstance(exc, auth.TransportError):
        return True
    if isinstance(exc, auth.RefreshError):
        return bool(getattr(exc, "retryable", False))
    return isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | http.client.HTTPException
        | requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | DataCorruption,
    )


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Every exception class the GCS client stack raises for a failed call."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

    return (
        api.GoogleAPICallError,
        api.RetryError,
        auth.GoogleAuthError,
        InvalidResponse,
        DataCorruption,
        requests.RequestException,
        http.client.HTTPException,
        OSError,
    )


class _RetryWatch:
    """Remembers whether the client library retried a call."""

    __slots__ = ("retried",)

    def __init__(self) -> None:
        self.retried = False

    def note(self, _exc: Exception) -> None:
        self.retried = True


class GcsObjectStore:
    """Objects in a GCS bucket, under an optional key prefix.

    Args:
        bucket_name: the bucket; it must exist.
        prefix: key prefix inside the bucket (``"servo"`` stores ``a/b`` as
            ``servo/a/b``); empty for the bucket root.
        client: a ``google.cloud.storage.Client``; by default one is built from the
            ambient credentials (and closed by `close`).
        timeout: seconds to wait for each HTTP request.
        retry_deadline: seconds the client library may spend retrying transient
            failures of one call; 0 disables its retries.
        owns_client: whether `close` closes the client (default: only one it built).

    Raises:
        ConfigError: google-cloud-storage is not installed, or no credentials.
    """

    def __init__(
        self,
        bucket_name: str,
        prefix: str = "",
        client: Any | None = None,
        *,
        timeout: float = 60.0,
        retry_deadline: float = 60.0,
        owns_client: bool | None = None,
    ) -> None:
        try:
            from google.cloud import storage
        except ImportError as exc:
            raise ConfigError(
                "storage.backend 'gcs' needs google-cloud-storage: pip install 'servo[gcp]'"
            ) from exc
        from google.auth.exceptions import DefaultCredentialsError

        prefix = prefix.strip("/")
        if prefix:
            check_path(prefix)
        self._prefix = f"{prefix}/" if prefix else ""
        self._owns_client = client is None if owns_client is None else owns_client
        if client is None:
            try:
                client = storage.Client()
            except DefaultCredentialsError as exc:
                raise ConfigError(
                    f"storage.backend 'gcs': no Google credentials found ({exc})"
                ) from exc
        self._client = client
        self._bucket = client.bucket(bucket_name)
        self._bucket_name = bucket_name
        self._timeout = timeout
        self._retry_deadline = retry_deadline
        self._errors = _driver_errors()

    def __repr__(self) -> str:
        return f"GcsObjectStore(bucket={self._bucket_name!r}, prefix={self._prefix!r})"

    def close(self) -> None:
        """Close the client if this store built it."""
        if self._owns_client:
            self._client.close()

    def _key(self, path: str) -> str:
        check_path(path)
        return self._prefix + path

    def _retry(self, watch: _RetryWatch | None = None) -> Retry | None:
        if self._retry_deadline <= 0:
            return None
        from google.api_core.retry import Retry

        return Retry(
            predicate=_is_transient,
            initial=0.1,
            maximum=5.0,
            multiplier=2.0,
            timeout=self._retry_deadline,
            on_error=None if watch is None else watch.note,
        )

    def _translate(self, exc: BaseException, action: str, path: str) -> StorageError:
        where = f"{path} (gs://{self._bucket_name}/{self._prefix}{path})"
        if _is_transient(exc):
            return TransientStorageError(f"cannot {action} {where}: {exc}")
        status = _status(exc)
        if status == 404 and action == "read":
            return ObjectNotFoundError(f"no object at {where}")
        if status == 404:
            return StorageError(f"cannot {action} {where}: bucket not found ({exc})")
        if status in (401, 403):
            return StorageError(f"cannot {action} {where}: permission denied ({exc})")
        return StorageError(f"cannot {action} {where}: {exc}")

    # -- writes ---------------------------------------------------------------------

    def put_if_absent(self, path: str, data: bytes) -> int:
        """Create `path` with `data` (``if_generation_match=0``); return its generation.

        Raises:
            ObjectExistsError: an object is already at `path` (nothing is changed).
            TransientStorageError: the write may succeed when retried.
        """
        return self._upload(path, data, 0)

    def put_if_generation(self, path: str, data: bytes, generation: int) -> int:
        """Replace `path` only if its current generation equals `generation`.

        Returns:
            The new generation.

        Raises:
            PreconditionFailedError: the object changed since, or does not exist.
            TransientStorageError: the write may succeed when retried.
        """
        if not 0 < generation < 2**63:  # GCS reads 0 as "create"; generations are int64
            raise PreconditionFailedError(
                f"generation mismatch on {path}: expected {generation}, which never matches"
            )
        return self._upload(path, data, generation)

    def _upload(self, path: str, data: bytes, expected: int) -> int:
        blob = self._bucket.blob(self._key(path))
        watch = _RetryWatch()
        try:
            blob.upload_from_string(
                data,
                content_type=_CONTENT_TYPE,
                if_generation_match=expected,
                timeout=self._timeout,
                retry=self._retry(watch),
            )
        except self._errors as exc:
            if _status(exc) != 412:
                REQUESTS.labels("put", "error").inc()
                raise self._translate(exc, "write", path) from exc
            REQUESTS.labels("put", "conflict").inc()
            if watch.retried:
                mine = self._landed_earlier(path, data)
                if mine is not None and mine != expected:
                    return mine
            if expected == 0:
                raise ObjectExistsError(f"object already exists: {path}") from exc
            raise PreconditionFailedError(
                f"generation mismatch on {path}: expected {expected}"
            ) from exc
        REQUESTS.labels("put", "ok").inc()
        return int(blob.generation)

    def _landed_earlier(self, path: str, data: bytes) -> int | None:
        """After a retried write lost its precondition: did our first attempt land?"""
        try:
            current = self.get(path)
        except ObjectNotFoundError:
            return None
        return current.generation if current.data == data else None

    def delete(self, path: str) -> None:
        """Remove `path` if present; a missing object is not an error."""
        key = self._key(path)
        try:
            self._bucket.delete_blob(key, timeout=self._timeout, retry=self._retry())
        except self._errors as exc:
            if _status(exc) != 404:
                REQUESTS.labels("delete", "error").inc()
                raise self._translate(exc, "delete", path) from exc
            REQUESTS.labels("delete", "absent").inc()
            return
        REQUESTS.labels("delete", "ok").inc()

    # -- reads ----------------------------------------------------------------------

    def get(self, path: str) -> StoredObject:
        """Read `path` and the generation of exactly those bytes.

        Raises:
            ObjectNotFoundError: nothing is stored at `path`.
            TransientStorageError: the read may succeed when retried.
        """
        blob = self._bucket.blob(self._key(path))
        try:
            data = blob.download_as_bytes(
                raw_download=True, timeout=self._timeout, retry=self._retry()
            )
        except self._errors as exc:
            REQUESTS.labels("get", "absent" if _status(exc) == 404 else "error").inc()
            raise self._translate(exc, "read", path) from exc
        REQUESTS.labels("get", "ok").inc()
        if blob.generation is None:
            return self._get_pinned(path)
        return StoredObject(data, int(blob.generation))

    def _get_pinned(self, path: str) -> StoredObject:
        """Read the metadata, then download that generation (no generation header)."""
        for _ in range(_PINNED_READ_ATTEMPTS):
            generation = self.head(path)
            if generation is None:
                raise ObjectNotFoundError(f"no object at {path}")
            blob = self._bucket.blob(self._key(path), generation=generation)
            try:
                data = blob.download_as_bytes(
                    raw_download=True, timeout=self._timeout, retry=self._retry()
                )
            except self._errors as exc:
                if _status(exc) == 404:
                    continue  # replaced or deleted since the metadata read
                raise self._translate(exc, "read", path) from exc
            return StoredObject(data, generation)
        raise TransientStorageError(f"cannot read {path}: it keeps changing")

    def head(self, path: str) -> int | None:
        """Return the generation of `path`, or None when it does not exist."""
        key = self._key(path)
        try:
            blob = self._bucket.get_blob(key, timeout=self._timeout, retry=self._retry())
        except self._errors as exc:
            REQUESTS.labels("head", "error").inc()
            raise self._translate(exc, "stat", path) from exc
        REQUESTS.labels("head", "ok" if blob is not None else "absent").inc()
        return None if blob is None else int(blob.generation)

    def list_prefix(self, prefix: str) -> Iterator[str]:
        """Yield every path starting with `prefix` (literally), in GCS's sorted order."""
        check_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        skip = len(self._prefix)
        REQUESTS.labels("list", "ok").inc()  # one per listing, not per page
        try:
            for blob in self._client.list_blobs(
                self._bucket,
                prefix=self._prefix + prefix,
                fields="items(name),nextPageToken",
                timeout=self._timeout,
                retry=self._retry(),
            ):
                yield blob.name[skip:]
        except self._errors as exc:
            raise self._translate(exc, "list", prefix or "/") from exc
