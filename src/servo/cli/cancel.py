"""``servo runs cancel RUN_ID``: stop a run, whether or not a process drives it.

The cancel request is a create-only ledger object (one per run), so any process may
write it and writing it twice is harmless. What happens next depends on whether a
live process drives the run, which the run lock tells (`servo.engine.run_lock`: the
runner holds an exclusive OS file lock on ``{home}/locks/...`` while it drives a run;
the command tries it without blocking):

- **driven** (lock held): the command writes the request and publishes it; the
  runner notices it within a sweep interval, asks running attempts to stop and ends
  the run. Output ``cancel: requested`` (or ``already_requested``), exit 0.
- **idle** (lock free; the run was stopped with Ctrl-C or its process died): the
  command takes the lock and ends the run itself, at once
  (`servo.engine.cancellation`): open attempts are abandoned as ``cancelled`` through
  events written to the ledger, tasks not started are cancelled, the run is
  CANCELLED in the projections and in the catalog. Output ``cancel: cancelled``, exit 0.
- **finished**: nothing is written; it says so, exit 1.

The lock only sees processes on this machine; a lease in the object store does the
same for runners on several machines (scale-out), later. The command never takes the
home lock (`servo.engine.home_lock`): it works while another process drives runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from servo.cli._session import catalog_configured, configure, tasks_run_elsewhere, with_home
from servo.cli.options import ConfigOption, HomeOption, JsonOption, TenantOption, state_of
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.vocabulary import RunStatus

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.config.settings import Settings
    from servo.engine.cancellation import IdleCancel
    from servo.engine.ledger import LedgerWriter
    from servo.storage.base import ObjectStore

#: Exit code when the run had already finished.
EXIT_FINISHED = 1


def cancel_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    home: HomeOption = None,
    tenant: TenantOption = "default",
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a run: stop its running assets and skip what has not started."""
    from servo.engine.ledger import LedgerWriter
    from servo.engine.run_lock import RunLock, home_lock_dir, lock_path
    from servo.errors import RunNotFoundError
    from servo.storage.factory import open_store

    settings = with_home(configure(state_of(ctx)), home)
    store = open_store(settings.storage, settings.home)
    if tasks_run_elsewhere(settings):
        _cancel_remote(settings, store, tenant, run_id, reason, as_json)
        return
    ledger = LedgerWriter(store, tenant, DEFAULT_WORKSPACE)
    if store.head(ledger.path_for(f"runs/{run_id}/requested")) is None:
        raise RunNotFoundError(run_id)
    lock = RunLock(lock_path(home_lock_dir(settings.home), tenant, DEFAULT_WORKSPACE, run_id))
    if lock.try_acquire():
        with lock:
            done = _cancel_idle(settings, store, tenant, run_id, reason)
        if done.already_finished:
            _say(run_id, "finished", done.run.status, as_json)
            raise typer.Exit(EXIT_FINISHED)
        _say(run_id, "cancelled", done.run.status, as_json, abandoned=done.abandoned)
        return
    status, outcome = _request_from_live(store, ledger, tenant, run_id, reason)
    if outcome == "finished":
        _say(run_id, outcome, status, as_json)
        raise typer.Exit(EXIT_FINISHED)
    _say(run_id, outcome, status, as_json, driver=lock.holder_pid())


def _cancel_remote(
    settings: Settings, store: ObjectStore, tenant: str, run_id: str, reason: str, as_json: bool
) -> None:
    """Request the cancel and notify the remote reconciler, which stops the run."""
    from servo.cli.remote import reconcile_queue
    from servo.runner.remote import RunFollower, cancel_remote

    run, _ = RunFollower(store, tenant, DEFAULT_WORKSPACE, run_id).poll()
    if run is not None and run.status != RunStatus.RUNNING:
        _say(run_id, "finished", run.status, as_json)
        raise typer.Exit(EXIT_FINISHED)
    queue = reconcile_queue(settings)
    try:
        written = cancel_remote(
            store,
            queue.notify,
            tenant_id=tenant,
            workspace_id=DEFAULT_WORKSPACE,
            run_id=run_id,
            reason=reason,
        )
    finally:
        queue.close()
    status = RunStatus.RUNNING if run is None else run.status
    _say(run_id, "requested" if written else "already_requested", status, as_json, remote=True)


def _cancel_idle(
    settings: Settings, store: ObjectStore, tenant: str, run_id: str, reason: str
) -> IdleCancel:
    """End the run here (no live process drives it), projecting into the catalog."""
    from servo.engine.cancellation import cancel_idle_run

    catalog = _open_catalog(settings, tenant)
    try:
        listeners = []
        if catalog is not None:
            from servo.catalog.projector import CatalogProjector

            listeners.append(CatalogProjector(catalog, store, tenant))
        return cancel_idle_run(
            store, tenant, DEFAULT_WORKSPACE, run_id, reason=reason, listeners=listeners
        )
    finally:
        if catalog is not None:
            catalog.close()


def _open_catalog(settings: Settings, tenant: str) -> Catalog | None:
    """The catalog when one is configured and reachable, else None (it catches up later)."""
    if not catalog_configured(settings):
        return None
    from servo.catalog import open_catalog
    from servo.errors import CatalogUnavailableError
    from servo.observability.logging import get_logger

    try:
        return open_catalog(settings)
    except CatalogUnavailableError as exc:
        log = get_logger(__name__)
        log.warning("catalog.unavailable_cancel_continues", tenant_id=tenant, error=str(exc))
        return None


def _request_from_live(
    store: ObjectStore, ledger: LedgerWriter, tenant: str, run_id: str, reason: str
) -> tuple[str, str]:
    """Write the request for the live runner and publish it; (status, outcome)."""
    from servo.engine.cancellation import cancel_path, request_cancel
    from servo.engine.compactor import Compactor
    from servo.engine.ids import now_us
    from servo.engine.ledger import LedgerReader

    compactor = Compactor(store, tenant, DEFAULT_WORKSPACE)
    record = compactor.run_record(run_id)
    if record is not None and record[0].status != RunStatus.RUNNING:
        return record[0].status, "finished"
    written = request_cancel(ledger, run_id, reason, now_us())
    compactor.fold(LedgerReader(store).read(ledger.path_for(cancel_path(run_id))))
    compactor.publish()
    run = compactor.state.run(run_id)
    status = RunStatus.RUNNING if run is None else run.status
    return status, "requested" if written else "already_requested"


def _say(
    run_id: str,
    outcome: str,
    status: str,
    as_json: bool,
    *,
    abandoned: int = 0,
    driver: int | None = None,
    remote: bool = False,
) -> None:
    import json

    if as_json:
        payload = {"run_id": run_id, "cancel": outcome, "status": status.lower()}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    status = status.lower()
    if outcome == "finished":
        sys.stdout.write(f"run {run_id} already finished ({status}); nothing to cancel\n")
    elif outcome == "cancelled":
        stopped = f"; {abandoned} running attempt(s) given up" if abandoned else ""
        sys.stdout.write(f"run {run_id}: cancelled (no process was driving it){stopped}\n")
    else:
        who = "the process driving it" + ("" if driver is None else f" (pid {driver})")
        if remote:
            who = "the reconciler"
        sys.stdout.write(
            f"run {run_id}: cancel {outcome.replace('_', ' ')}; {who} stops it within "
            f"a second (status: {status})\n"
        )
