"""The reconciler service: request-driven reconcile steps for every workspace.

One process (a `servo serve --role reconciler` instance, a Celery worker) serves
many workspaces. It keeps one `WorkspaceReconciler` per workspace it was asked
about — a cache only: each call checks the manifest and reloads when another
instance published — and forgets the least recently used beyond `max_workspaces`,
so its memory is bounded by the workspaces it serves at once.

Workspaces are registered (`register_workspace`, by `submit_run`) under
`workspaces/{tenant}/{workspace}`, a small create-only object, so a periodic sweep
finds every workspace by listing that prefix (listing serves liveness only).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from servo.engine import events as ev
from servo.engine.effects import Dispatcher, TimerDelivery
from servo.engine.ids import new_ulid, now_us, timer_scope
from servo.engine.snapshot import PublishListener
from servo.errors import ObjectExistsError
from servo.runner.workspace import (
    ReconcilerSettings,
    StepSummary,
    WorkspaceReconciler,
    new_pool,
)
from servo.storage.base import ObjectStore

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

REGISTRY_PREFIX = "workspaces/"

Scope = tuple[str, str]


def register_workspace(store: ObjectStore, tenant_id: str, workspace_id: str) -> None:
    """Record that (tenant, workspace) has runs, for the sweep to find (idempotent)."""
    with contextlib.suppress(ObjectExistsError):  # registered before
        store.put_if_absent(f"{REGISTRY_PREFIX}{tenant_id}/{workspace_id}", b"{}")


def registered_workspaces(store: ObjectStore) -> list[Scope]:
    """Every registered (tenant, workspace), sorted."""
    found = []
    for path in store.list_prefix(REGISTRY_PREFIX):
        parts = path.removeprefix(REGISTRY_PREFIX).split("/")
        if len(parts) == 2 and all(parts):
            found.append((parts[0], parts[1]))
    return sorted(found)


class ReconcilerService:
    """Routes reports, timers and sweeps to the reconciler of their workspace.

    Args:
        store: ledger and projections of every workspace.
        defs: the definitions runs are planned from.
        dispatcher: hands task requests to the workers.
        timers: delivers due timers back to `fire`.
        settings: timing of every workspace's reconciler.
        max_workspaces: workspaces kept loaded at once.
        listener_for: the publish listener of a workspace (a read model such as the
            catalog), made when the workspace is loaded; closed (in the background)
            when it is forgotten, if it has ``close``.
    """

    def __init__(
        self,
        store: ObjectStore,
        defs: Definitions,
        dispatcher: Dispatcher,
        timers: TimerDelivery,
        settings: ReconcilerSettings | None = None,
        *,
        max_workspaces: int = 64,
        clock: Callable[[], int] = now_us,
        new_id: Callable[[], str] = new_ulid,
        listener_for: Callable[[str, str], PublishListener] | None = None,
    ) -> None:
        self._store = store
        self._listener_for = listener_for
        self._listeners: dict[Scope, PublishListener] = {}
        self._defs = defs
        self._dispatcher = dispatcher
        self._timers = timers
        self._settings = settings or ReconcilerSettings()
        self._max = max_workspaces
        self._clock = clock
        self._new_id = new_id
        self._loaded: OrderedDict[Scope, WorkspaceReconciler] = OrderedDict()
        # One pool for every workspace: a forgotten one leaves no threads behind.
        self._pool = new_pool()
        self._lock = threading.Lock()

    def reconcile(
        self,
        tenant_id: str,
        workspace_id: str,
        paths: Sequence[str],
        events: Sequence[ev.Event] = (),
    ) -> StepSummary:
        """Fold the ledger objects and the events a writer reported; act on what
        changed."""
        return self._of(tenant_id, workspace_id).reconcile(paths, events)

    def fire(self, timer_id: str) -> StepSummary:
        """Deliver a due timer to its workspace.

        Raises:
            ValueError: `timer_id` is not a timer id.
        """
        return self._of(*timer_scope(timer_id)).fire(timer_id)

    def fire_due(self, tenant_id: str, workspace_id: str) -> StepSummary:
        """A wake-up of one workspace: fire its due timers."""
        return self._of(tenant_id, workspace_id).fire_due()

    def sweep(self, scopes: Iterable[Scope] | None = None) -> dict[Scope, StepSummary]:
        """Sweep `scopes`, or every registered workspace."""
        targets = registered_workspaces(self._store) if scopes is None else list(scopes)
        return {scope: self._of(*scope).sweep() for scope in targets}

    def _of(self, tenant_id: str, workspace_id: str) -> WorkspaceReconciler:
        scope = (tenant_id, workspace_id)
        with self._lock:
            found = self._loaded.get(scope)
            if found is None:
                listener = None
                if self._listener_for is not None:
                    listener = self._listeners[scope] = self._listener_for(*scope)
                found = WorkspaceReconciler(
                    self._store,
                    tenant_id,
                    workspace_id,
                    self._defs,
                    self._dispatcher,
                    self._timers,
                    self._settings,
                    clock=self._clock,
                    new_id=self._new_id,
                    pool=self._pool,
                    on_publish=listener,
                )
                self._loaded[scope] = found
                while len(self._loaded) > self._max:
                    forgotten, _ = self._loaded.popitem(last=False)
                    _close_later(self._listeners.pop(forgotten, None))
            else:
                self._loaded.move_to_end(scope)
            return found


def _close_later(listener: PublishListener | None) -> None:
    """Close a forgotten workspace's listener without holding up the request (it
    may finish a projection first)."""
    close = getattr(listener, "close", None)
    if close is not None:
        threading.Thread(target=close, name="servo-listener-close", daemon=True).start()
