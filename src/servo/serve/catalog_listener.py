"""A reconciler's publishes projected into the PostgreSQL catalog, never in its way.

`CatalogListener` is one workspace's publish listener in the reconciler role with
``database.url`` set. It starts a `servo.embedded.catalog_sync.CatalogSync` (a
background thread that registers the definitions and projects the newest snapshot)
on the first publish. A catalog that cannot be opened — unreachable, or not migrated
(``servo catalog migrate``) — must not fail reconcile steps: the error is logged
(``reconciler.catalog_unavailable``) and counted
(``servo_runs_without_catalog_total``), snapshots are dropped, and opening is tried
again on a publish `RETRY_S` later. The projector resumes from the catalog's
checkpoint, so nothing is lost meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from servo.embedded.catalog_sync import RUNS_WITHOUT_CATALOG
from servo.errors import ServoError
from servo.observability.logging import get_logger

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.embedded.catalog_sync import CatalogSync
    from servo.engine.snapshot import Snapshot
    from servo.sdk.definitions import Definitions
    from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: Seconds between attempts to open a catalog that could not be opened.
RETRY_S = 60.0


class CatalogListener:
    """Projects one workspace's publishes into the catalog; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        tenant_id: str,
        workspace_id: str,
        defs: Definitions,
        store: ObjectStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._scope = (tenant_id, workspace_id)
        self._defs = defs
        self._store = store
        self._monotonic = monotonic
        self._sync: CatalogSync | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, snapshot: Snapshot) -> None:
        """Hand `snapshot` to the projection thread (started on first use)."""
        with self._lock:
            sync = self._sync or self._start()
        if sync is not None:
            sync(snapshot)

    def close(self) -> None:
        """Project the last snapshot and stop the thread (if it started)."""
        with self._lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    def _start(self) -> CatalogSync | None:
        now = self._monotonic()
        if self._failed_at is not None and now - self._failed_at < RETRY_S:
            return None
        from servo.embedded.session import start_catalog_sync

        tenant_id, workspace_id = self._scope
        try:
            self._sync = start_catalog_sync(
                self._settings, tenant_id, self._defs, self._store, workspace_id
            )
        except (ServoError, OSError) as exc:
            self._failed_at = now
            RUNS_WITHOUT_CATALOG.labels(type(exc).__name__).inc()
            log.error(
                "reconciler.catalog_unavailable",
                tenant_id=tenant_id,
                workspace_id=workspace_id,
                error_type=type(exc).__name__,
                error=str(exc),
                recovery=f"runs go on; the catalog is tried again in {RETRY_S:g} s and "
                "catches up from its checkpoint (run 'servo catalog migrate' if it is "
                "not migrated)",
            )
            return None
        self._failed_at = None
        return self._sync
