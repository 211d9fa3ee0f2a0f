"""The catalog side of a run, off its critical path: one background thread.

A run needs nothing from the catalog: it is a read model of the engine's projections
plus the registry of the definitions. Opening it (importing SQLAlchemy, creating or
migrating a SQLite file), registering the definitions and projecting every published
snapshot once cost more main-thread time than anything else in a cold
``servo materialize``. `CatalogSync` does all three in one daemon thread:

1. **open**, once the first snapshot is published (or the sync is closed): the
   given ``open_catalog`` callable (`servo.embedded.session.catalog_for_run`:
   opens the catalog and registers the definitions). It returns None when the catalog
   cannot be reached (it logs the warning); any other error is logged here
   (``catalog.background_failed``) and counted in
   ``servo_runs_without_catalog_total``: the run goes on and the next run's projector
   catches up from its checkpoint. Waiting for the first snapshot keeps the
   thread's imports (SQLAlchemy) out of the way of the runner's own start, which is
   CPU-bound and would share the interpreter lock with them; once the run goes
   on, the runner mostly waits on disk writes and workers;
2. **project**: the sync is the runner's publish listener. Publishing only hands it
   the snapshot (no I/O on the runner's thread); the thread projects the newest
   snapshot it holds. Snapshots that arrive while a projection runs are coalesced:
   the projector reads every file new since its checkpoint, so only the newest one
   matters. A projection that fails is logged (``catalog.projection_failed``) and
   counted (``servo_catalog_projection_errors_total``); the next snapshot catches up;
3. **close**: the last snapshot is projected and the thread ends, closing the
   catalog. `close` waits at most ``timeout_s``; a catalog still behind then logs
   ``catalog.projection_unfinished`` and counts
   ``servo_catalog_projection_unfinished_total`` (the process may end; the next run
   catches up).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from servo.observability import metrics
from servo.observability.logging import get_logger

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.engine.snapshot import Snapshot

log = get_logger(__name__)

#: How long the end of a command waits for the catalog to catch up, by default.
FLUSH_TIMEOUT_S = 60.0

RUNS_WITHOUT_CATALOG = metrics.counter(
    "servo_runs_without_catalog_total",
    "Runs that went on without the catalog (it catches up later), by error.",
    ["error_type"],
)
PROJECTION_ERRORS = metrics.counter(
    "servo_catalog_projection_errors_total",
    "Background catalog projections that failed (the next snapshot catches up), by error.",
    ["error_type"],
)
UNFINISHED = metrics.counter(
    "servo_catalog_projection_unfinished_total",
    "Commands that ended before the background catalog projection caught up.",
)

#: Opens the catalog (and registers what it must); None when it is unavailable.
OpenCatalog = Callable[[], "Catalog | None"]
#: Makes the projection of one snapshot, given the open catalog.
MakeProjector = Callable[["Catalog"], Callable[["Snapshot"], object]]


class CatalogSync:
    """Open, register and project in the background; see the module docstring.

    Args:
        open_catalog: opens the catalog, registering the definitions; None when the
            catalog is unavailable (and said so).
        make_projector: the projection of one snapshot into the open catalog.
        name: the thread's name.
    """

    def __init__(
        self,
        open_catalog: OpenCatalog,
        make_projector: MakeProjector,
        *,
        name: str = "servo-catalog",
    ) -> None:
        self._open = open_catalog
        self._make_projector = make_projector
        self._changed = threading.Condition()
        self._pending: Snapshot | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        #: Snapshots projected (after coalescing); tests and logs read it.
        self.projected = 0

    def start(self) -> CatalogSync:
        """Start the thread (it opens the catalog at once)."""
        self._thread.start()
        return self

    def __call__(self, snapshot: Snapshot) -> None:
        """The publish listener: keep `snapshot` as the newest to project, and return."""
        with self._changed:
            if self._pending is None or snapshot.generation >= self._pending.generation:
                self._pending = snapshot
            self._changed.notify()

    def close(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Project the last snapshot, then stop; wait at most `timeout_s`.

        Returns:
            True when the thread ended (the catalog is as current as it could be made);
            False when it was still working after `timeout_s` (logged and counted).
        """
        with self._changed:
            self._closing = True
            self._changed.notify()
        if not self._thread.is_alive() and self._thread.ident is None:
            return True  # never started
        started = time.monotonic()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            return True
        UNFINISHED.inc()
        log.warning(
            "catalog.projection_unfinished",
            waited_s=round(time.monotonic() - started, 1),
            recovery="the run is recorded; the next run's projector catches up",
        )
        return False

    # ------------------------------------------------------------------ thread
    def _take(self) -> Snapshot | None:
        """The newest pending snapshot; None once closing with nothing left."""
        with self._changed:
            while self._pending is None and not self._closing:
                self._changed.wait()
            taken, self._pending = self._pending, None
            return taken

    def _first_work(self) -> None:
        """Wait for a snapshot to project, or for the close."""
        with self._changed:
            while self._pending is None and not self._closing:
                self._changed.wait()

    def _main(self) -> None:
        self._first_work()
        try:
            catalog = self._open()
        except Exception as exc:  # the catalog is a read model: the run goes on
            RUNS_WITHOUT_CATALOG.labels(type(exc).__name__).inc()
            log.error(
                "catalog.background_failed",
                error_type=type(exc).__name__,
                error=str(exc),
                recovery="the run goes on; the catalog catches up on the next run",
            )
            return
        if catalog is None:
            return
        try:
            project = self._make_projector(catalog)
            while (snapshot := self._take()) is not None:
                try:
                    project(snapshot)
                    self.projected += 1
                except Exception as exc:  # the next snapshot catches up from the checkpoint
                    PROJECTION_ERRORS.labels(type(exc).__name__).inc()
                    log.error(
                        "catalog.projection_failed",
                        generation=snapshot.generation,
                        error_type=type(exc).__name__,
                        error=str(exc),
                        recovery="the next snapshot (or run) catches up from the checkpoint",
                    )
        finally:
            catalog.close()
