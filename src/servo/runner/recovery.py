"""What the embedded runner does to take over after a crash or a stop.

The ledger is the truth; the published projections may lag it and a dead runner's
pool is gone. Before it drives a run, the runner:

- folds the ledger objects the last manifest may not reflect (`unfolded`; the
  listing itself is `servo.engine.recovery`);
- gives up on attempts of the run that no worker of its own holds
  (`AttemptAbandoned(worker_lost)`, which redelivers them);
- hands the run's scheduled timers to its timer wheel;
- folds a cancel request another process wrote for the run (`cancel_request`, also
  polled at every sweep).

A task whose result was recorded is not run again (the worker runtime's idempotency
record), so redelivering an attempt that did finish costs only its dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.cancellation import cancel_path
from servo.engine.compactor import Compactor
from servo.engine.fold import EngineState
from servo.engine.ids import dispatch_id
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.engine.recovery import FINDINGS
from servo.engine.vocabulary import AbandonReason
from servo.errors import ObjectNotFoundError
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)


def unfolded(store: ObjectStore, compactor: Compactor) -> tuple[list[ev.Event], list[str]]:
    """The events of ledger objects the folded state may lack, and those objects."""
    paths = compactor.unfolded_paths()
    if not paths:
        return [], []
    log.info("runner.recovering", paths=len(paths))
    return LedgerReader(store).read_many(paths), paths


def orphans(
    state: EngineState,
    run_id: str,
    held: Container[str],
    *,
    now: int,
    new_id: Callable[[], str],
) -> list[ev.Event]:
    """`AttemptAbandoned(worker_lost)` for open attempts of `run_id` whose dispatch
    ids are not `held` by this runner's pool."""
    events = []
    tenant, workspace = state.tenant_id, state.workspace_id
    for task in state.tasks_of(run_id):
        if task.status not in (s.DISPATCHED, s.RUNNING) or task.attempt_id is None:
            continue
        if dispatch_id(tenant, workspace, run_id, task.task_key, task.attempt) in held:
            continue
        events.append(
            ev.Event(
                event_id=new_id(),
                tenant_id=tenant,
                workspace_id=workspace,
                run_id=run_id,
                payload=ev.AttemptAbandoned(reason=AbandonReason.WORKER_LOST),
                task_key=task.task_key,
                attempt=task.attempt,
                attempt_id=task.attempt_id,
                emitted_at=now,
            )
        )
    if events:
        FINDINGS.labels("orphaned_attempt").inc(len(events))
        # expected after a stop or a crash: resuming is the recovery
        log.info("runner.orphaned_attempts", run_id=run_id, count=len(events))
    return events


def scheduled_timers(state: EngineState, run_id: str) -> list[tuple[str, int]]:
    """(timer id, due at) of the run's timers still to fire."""
    return [
        (t.timer_id, t.due_at) for t in state.timers_of_run(run_id) if t.status == s.TIMER_SCHEDULED
    ]


def cancel_request(
    store: ObjectStore, ledger: LedgerWriter, state: EngineState, run_id: str
) -> tuple[list[ev.Event], str] | None:
    """A cancel request for `run_id` in the ledger that the state lacks, and its path."""
    run = state.run(run_id)
    if run is None or run.cancel_requested_at is not None:
        return None
    path = ledger.path_for(cancel_path(run_id))
    if store.head(path) is None:
        return None
    try:
        return LedgerReader(store).read(path), path
    except ObjectNotFoundError:  # pragma: no cover - deleted between head and get
        return None
