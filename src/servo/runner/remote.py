"""Submitting a run to a remote reconciler and following it from its projections.

In the scale-out modes the process that starts a run does not drive it: it plans the
run and writes its `RunRequested` to the ledger (create-only, named by the run id, so
a retried submission finds the same run), hands that ledger object to the reconciler
(`notify`), and then only reads the published projections to follow the run to its
end, as `servo materialize` prints it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servo.engine import schema as s
from servo.engine.cancellation import cancel_path, request_cancel
from servo.engine.compactor import Compactor
from servo.engine.ids import new_ulid, now_us
from servo.engine.ledger import LedgerWriter
from servo.engine.manifest import ManifestStore
from servo.engine.snapshot import SnapshotReader
from servo.errors import EngineError, RunNotFoundError
from servo.runner import planning
from servo.runner.options import Progress
from servo.runner.service import register_workspace
from servo.storage.base import ObjectStore
from servo.worker.notify import Notify

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions


@dataclass(frozen=True, slots=True)
class Submitted:
    """A run handed to the reconciler.

    Attributes:
        run_id: the run.
        resumed: the idempotency key named an existing run; nothing new was planned.
        path: the ledger object of its `RunRequested`.
    """

    run_id: str
    resumed: bool
    path: str


def submit_run(
    store: ObjectStore,
    defs: Definitions,
    notify: Notify,
    *,
    tenant_id: str,
    workspace_id: str,
    selection: str | None = None,
    idempotency_key: str | None = None,
    clock: Callable[[], int] = now_us,
    new_id: Callable[[], str] = new_ulid,
) -> Submitted:
    """Plan a run, write its request and notify the reconciler.

    Notifying a resumed run again is harmless (the fold ignores what it has), and
    makes a submission whose first notification was lost go on.

    Raises:
        SelectionError: the selection matches nothing or names an unknown asset.
        DefinitionError: a dependency outside the selection was never materialized.
    """
    compactor = Compactor(store, tenant_id, workspace_id, clock=clock)
    start = planning.start_run(
        store,
        compactor,
        defs,
        selection=selection,
        idempotency_key=idempotency_key,
        upstream=None,
        clock=clock,
        new_id=new_id,
    )
    path = LedgerWriter(store, tenant_id, workspace_id).path_for(f"runs/{start.run_id}/requested")
    register_workspace(store, tenant_id, workspace_id)
    notify(tenant_id, workspace_id, [path])
    return Submitted(start.run_id, start.resumed, path)


class RunFollower:
    """Reads a run's published state; reloads only when a new generation appeared."""

    def __init__(self, store: ObjectStore, tenant_id: str, workspace_id: str, run_id: str):
        self.run_id = run_id
        self._manifests = ManifestStore(store, tenant_id, workspace_id)
        self._reader = SnapshotReader(store, tenant_id, workspace_id)
        self._generation: int | None = None
        self._seen: tuple[s.RunRow | None, list[s.TaskRow]] = (None, [])

    def poll(self) -> tuple[s.RunRow | None, list[s.TaskRow]]:
        """The run's row (None: not published yet) and its tasks, as last published
        (read again only when a new generation was published)."""
        generation = self._manifests.latest_generation()
        if generation != self._generation:
            snapshot = self._reader.load()
            run = snapshot.run(self.run_id)
            self._seen = (run, snapshot.tasks_of(self.run_id) if run is not None else [])
            self._generation = snapshot.generation
        run, tasks = self._seen
        return run, list(tasks)

    def wait(
        self,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.2,
        on_progress: Progress | None = None,
        sleep: Callable[[float], object] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        stopped: Callable[[], bool] = lambda: False,
    ) -> s.RunRow | None:
        """Poll until the run ends; returns its final row, or None once `stopped`
        says to stop following (the run goes on).

        Raises:
            EngineError: `timeout_s` passed before the run ended (it goes on; follow it
                again later with the same run id).
        """
        deadline = None if timeout_s is None else monotonic() + timeout_s
        seen: tuple[tuple[str, int], ...] = ()
        while True:
            run, tasks = self.poll()
            if run is not None:
                counts: Counter[str] = Counter(str(t.status) for t in tasks)
                key = tuple(sorted(counts.items()))
                if on_progress is not None and key != seen:
                    seen = key
                    on_progress(run, dict(counts))
                if run.status != s.RUN_RUNNING:
                    return run
            if stopped():
                return None
            if deadline is not None and monotonic() >= deadline:
                status = "not published yet" if run is None else run.status
                raise EngineError(
                    f"run {self.run_id} did not end within {timeout_s:g}s (now {status}); "
                    "it goes on: follow it again with 'servo runs show "
                    f"{self.run_id}'"
                )
            sleep(poll_s)


def cancel_remote(
    store: ObjectStore,
    notify: Notify,
    *,
    tenant_id: str,
    workspace_id: str,
    run_id: str,
    reason: str = "",
    clock: Callable[[], int] = now_us,
) -> bool:
    """Write the run's cancel request and notify the reconciler, which abandons its
    open attempts and skips what has not started. False when a cancel was requested
    before (it is notified again, in case the first notification was lost).

    Raises:
        RunNotFoundError: no run `run_id` was submitted in this workspace.
    """
    ledger = LedgerWriter(store, tenant_id, workspace_id)
    if store.head(ledger.path_for(f"runs/{run_id}/requested")) is None:
        raise RunNotFoundError(run_id)
    written = request_cancel(ledger, run_id, reason, clock())
    notify(tenant_id, workspace_id, [ledger.path_for(cancel_path(run_id))])
    return written
