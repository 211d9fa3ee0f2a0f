"""Ending a run that no live process drives (``servo runs cancel`` on an idle run).

A runner driving a run ends it itself when it sees the cancel request (within a sweep
interval). A run nobody drives — its `servo materialize` was stopped or killed — would
otherwise stay RUNNING until someone resumes it, so `cancel_idle_run` does the
runner's part once, here and now:

1. fold the ledger objects the published projections may not reflect (the dead
   runner's last batches: `servo.engine.recovery`), so the decision sees every fact;
2. a finished run is left as it is (nothing is written);
3. write the cancel request (create-only, one per run), then `AttemptAbandoned
   (cancelled)` for every open attempt, to the ledger, and fold them: tasks not
   started become CANCELLED, the run CANCELLED;
4. publish the projections and hand the snapshot to the listeners (the catalog).

`request_cancel` writes the request alone (a runner, or ``servo runs cancel`` for a
run a live process drives, which then ends it).

The caller must make sure no live process drives the run (the run lock,
`servo.engine.run_lock`): a runner that resumes the run afterwards finds it finished.
Running it twice is harmless: the second call finds the run finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.compactor import Compactor
from servo.engine.controllers.timers import abandon_cancelled
from servo.engine.ids import new_ulid, now_us
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.engine.snapshot import PublishListener
from servo.errors import EngineError
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)


def cancel_path(run_id: str) -> str:
    """The ledger suffix of a run's cancel request (create-only: one per run)."""
    return f"runs/{run_id}/cancel"


def request_cancel(ledger: LedgerWriter, run_id: str, reason: str, now: int) -> bool:
    """Write the run's cancel request at its create-only path; False if one exists."""
    event = ev.Event.new(
        ev.RunCancelRequested(reason=reason),
        tenant_id=ledger.tenant_id,
        workspace_id=ledger.workspace_id,
        run_id=run_id,
        emitted_at=now,
    )
    return ledger.append_at(cancel_path(run_id), event)


@dataclass(frozen=True, slots=True)
class IdleCancel:
    """What `cancel_idle_run` did.

    Attributes:
        run: the run's row afterwards.
        already_finished: the run had ended before; nothing was written.
        requested: this call wrote the cancel request (False: it existed).
        abandoned: open attempts ended as `cancelled`.
    """

    run: s.RunRow
    already_finished: bool
    requested: bool = False
    abandoned: int = 0


def cancel_idle_run(
    store: ObjectStore,
    tenant_id: str,
    workspace_id: str,
    run_id: str,
    *,
    reason: str = "",
    listeners: Iterable[PublishListener] = (),
    clock: Callable[[], int] = now_us,
    new_id: Callable[[], str] = new_ulid,
) -> IdleCancel:
    """Cancel `run_id` and end it at once; see the module docstring.

    Raises:
        EngineError: there is no such run.
    """
    compactor = Compactor(store, tenant_id, workspace_id, clock=clock)
    _fold_unfolded(store, compactor, tenant_id, workspace_id)
    record = compactor.run_record(run_id)
    if record is None:
        raise EngineError(f"no run {run_id} in {tenant_id}/{workspace_id}")
    run = record[0]
    if run.status != s.RUN_RUNNING:
        return IdleCancel(run, already_finished=True)
    ledger = LedgerWriter(store, tenant_id, workspace_id)
    requested = request_cancel(ledger, run_id, reason, clock())
    compactor.fold(LedgerReader(store).read(ledger.path_for(cancel_path(run_id))))
    abandoned = abandon_cancelled(
        compactor.state.tasks_of(run_id),
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        now=clock(),
        new_id=new_id,
    )
    if abandoned:
        ledger.append(abandoned)  # recorded before anything reflects it
        compactor.fold(abandoned)
    compactor.publish(taken_at=clock())
    snapshot = compactor.snapshot()
    for listener in listeners:
        try:
            listener(snapshot)
        except Exception as exc:  # a read model catches up from the next snapshot
            log.error(
                "run.cancel_listener_failed",
                tenant_id=tenant_id,
                run_id=run_id,
                error_type=type(exc).__name__,
                error=str(exc),
            )
    ended = compactor.state.run(run_id)
    assert ended is not None
    log.info(
        "run.cancelled_idle",
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        run_id=run_id,
        status=ended.status,
        abandoned=len(abandoned),
    )
    return IdleCancel(ended, False, requested, len(abandoned))


def _fold_unfolded(
    store: ObjectStore, compactor: Compactor, tenant_id: str, workspace_id: str
) -> None:
    paths = compactor.unfolded_paths()
    if paths:
        compactor.fold(LedgerReader(store).read_many(paths), paths=paths)
