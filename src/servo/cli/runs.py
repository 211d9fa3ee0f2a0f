"""``servo materialize`` and ``servo runs list|show``: run assets and read run history.

``materialize`` runs the selected assets with the embedded runner (zero services);
several selection arguments are their union, ``--workflow`` runs a workflow's assets
(`servo.cli.selection`):
a live progress bar on stderr, a summary table (or ``--json``) on stdout. Exit code
0 when every selected asset succeeded, 1 when any failed or was skipped, 2 for usage
or definition errors, 130 when Ctrl-C or SIGTERM stopped it (`servo.cli.lifecycle`).
``--home`` defaults to ``SERVO_HOME`` (or the config file's ``home``), else ``./.servo``.

Every ``materialize`` projects into the catalog (``database.url``, else SQLite at
``{home}/catalog.db``): the definitions and lineage edges are registered before the
run, and a publish listener upserts executions, tasks and materializations after
each published snapshot. A catalog that cannot be reached does not stop the run
(a warning says so; the next ``materialize`` catches up from its checkpoint); a
PostgreSQL catalog that was never migrated does (``servo catalog migrate``). All of
this is `servo.embedded.session.run_assets`, which the Python API shares.

``runs list`` and ``runs show`` read the catalog when one is configured (see
`servo.cli._session`), else the published projections of the home. ``--tenant``
(``SERVO_TENANT``) is the engine scope's tenant and the catalog tenant alike.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from servo.cli._session import (
    catalog_configured,
    configure,
    resolve_target,
    tasks_run_elsewhere,
    with_home,
)
from servo.cli.lifecycle import DEFAULT_GRACE_S, GraceOption
from servo.cli.options import (
    ConfigOption,
    DefsOption,
    HomeOption,
    JsonOption,
    TenantOption,
    state_of,
)
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.vocabulary import RunStatus, TaskStatus
from servo.errors import ServoError

if TYPE_CHECKING:
    from servo.catalog.run_records import Execution, ExecutionTask
    from servo.config.settings import Settings
    from servo.engine.schema import RunRow, TaskRow

#: Exit code when a run ends with any asset failed, skipped or cancelled.
EXIT_RUN_FAILED = 1

runs_app = typer.Typer(help="Runs recorded in the Servo home.", no_args_is_help=True)


def run_row(execution: Execution) -> RunRow:
    """A catalog execution as the engine's run row (so both render alike)."""
    from servo.engine.schema import RunRow

    return RunRow(
        run_id=execution.execution_id,
        tenant_id=execution.tenant_id or "",
        workspace_id=execution.workspace_id,
        request_event_id="",
        requested_at=execution.requested_at,
        idempotency_key=execution.idempotency_key,
        selection=execution.selection,
        defs_source=execution.defs_source,
        cancel_requested_at=execution.cancel_requested_at,
        # An execution created through the API is PENDING until the engine sees it, a
        # status no engine run holds; rendering only reads its text.
        status=cast("RunStatus", execution.status),
        n_tasks=execution.n_tasks,
        n_succeeded=execution.n_succeeded,
        n_failed=execution.n_failed,
        n_skipped=execution.n_skipped,
        n_cancelled=execution.n_cancelled,
        completed_at=execution.completed_at,
    )


def task_row(task: ExecutionTask) -> TaskRow:
    """A catalog task as the engine's task row."""
    from servo.engine.schema import TaskRow

    return TaskRow(
        run_id=task.execution_id,
        task_key=task.task_key,
        asset_key=task.asset_key,
        partition_key=task.partition_key,
        max_attempts=task.max_attempts,
        status=TaskStatus(task.status),
        attempt=task.attempt,
        started_at=task.started_at,
        finished_at=task.finished_at,
        error_type=task.error_type,
        error_message=task.error_message,
        output_rows=task.output_rows,
    )


def task_status(task: TaskRow) -> str:
    """A task's status as the CLI prints it (lower case)."""
    return task.status.lower()


def run_payload(run: RunRow, tasks: list[TaskRow]) -> dict[str, Any]:
    """``{"run_id", "status", "tasks": {asset: status}, ...}`` for ``--json``."""
    from servo.cli.render import time_fields

    return {
        "run_id": run.run_id,
        "status": run.status.lower(),
        "tasks": {t.task_key: task_status(t) for t in tasks},
        "idempotency_key": run.idempotency_key,
        "selection": run.selection,
        **time_fields("requested_at", run.requested_at),
        **time_fields("completed_at", run.completed_at),
        "errors": {
            t.task_key: {"type": t.error_type, "message": t.error_message}
            for t in tasks
            if t.error_type is not None and t.status != TaskStatus.SUCCEEDED
        },
    }


def materialize(
    ctx: typer.Context,
    selection: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SELECTION",
            help="Assets to run, e.g. report +report raw+ (their union; default: all).",
            show_default=False,
        ),
    ] = None,
    defs: DefsOption = None,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            help="Run a @workflow's assets (with a selection: the assets in both).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1024, help="Assets running at once.")
    ] = 4,
    home: HomeOption = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Run again with the same key to resume, not repeat."
        ),
    ] = None,
    processes: Annotated[
        bool, typer.Option("--processes", help="Run assets in worker processes, not threads.")
    ] = False,
    tenant: TenantOption = "default",
    grace: GraceOption = DEFAULT_GRACE_S,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="With cloud.provider gcp: submit the run and return at once.",
        ),
    ] = False,
) -> None:
    """Run the selected assets and their dependencies' results (on this machine, or on
    the configured cloud)."""
    from servo.cli import lifecycle
    from servo.cli.selection import run_selection
    from servo.embedded.session import RunRequest, run_assets
    from servo.sdk.loader import load_definitions
    from servo.storage.home import check_home

    settings = with_home(configure(state_of(ctx)), home)
    definitions = load_definitions(resolve_target(defs))
    if tasks_run_elsewhere(settings):
        from servo.cli.remote import materialize_remote

        materialize_remote(
            definitions,
            settings,
            selection=run_selection(definitions, selection or (), workflow),
            idempotency_key=idempotency_key,
            tenant=tenant,
            as_json=as_json,
            wait=not no_wait,
        )
        return
    if no_wait:
        raise ServoError(
            "--no-wait needs tasks that run elsewhere (cloud.provider: gcp or celery); an "
            "embedded "
            "run lives in this process"
        )
    check_home(settings.home, write=True)
    request = RunRequest(
        selection=run_selection(definitions, selection or (), workflow),
        idempotency_key=idempotency_key,
        tenant=tenant,
        concurrency=concurrency,
        processes=processes,
    )
    watch = partial(lifecycle.cli_watch, as_json=as_json, grace_s=grace, key=idempotency_key)
    outcome = run_assets(definitions, request, settings, watch=watch)
    run, tasks = outcome.run, list(outcome.tasks)
    resume = lifecycle.resume_command(run.run_id, home, tenant)
    where = lifecycle.where_options(home, tenant)
    lifecycle.finish(
        run, tasks, as_json=as_json, interrupted=outcome.interrupted, resume=resume, where=where
    )


def _catalog_runs(settings: Settings, tenant: str) -> list[RunRow]:
    from servo.catalog import open_catalog

    runs: list[RunRow] = []
    with open_catalog(settings) as catalog:
        cursor = None
        while True:
            page = catalog.executions.list(tenant, limit=1000, cursor=cursor)
            runs.extend(run_row(e) for e in page.items)
            if page.next_cursor is None:
                return runs
            cursor = page.next_cursor


def _catalog_run(settings: Settings, tenant: str, run_id: str) -> tuple[RunRow, list[TaskRow]]:
    from servo.catalog import open_catalog
    from servo.errors import RunNotFoundError

    with open_catalog(settings) as catalog:
        execution = catalog.executions.get(tenant, run_id)
        if execution is None:
            raise RunNotFoundError(run_id, f"the catalog for tenant {tenant!r}")
        return run_row(execution), [task_row(t) for t in catalog.executions.tasks(tenant, run_id)]


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the runs of the tenant, newest first (from the catalog when configured)."""
    from servo.cli import render_runs

    settings = with_home(configure(state_of(ctx)), home)
    if catalog_configured(settings):
        source, runs = "catalog", _catalog_runs(settings, tenant)
    else:
        from servo.engine.snapshot import SnapshotReader
        from servo.storage.factory import open_store

        store = open_store(settings.storage, settings.home)
        source = "projections"
        runs = sorted(
            SnapshotReader(store, tenant, DEFAULT_WORKSPACE).load().runs(),
            key=lambda r: r.requested_at,
            reverse=True,
        )
    if as_json:
        payload = {"runs": [render_runs.run_summary(r) for r in runs], "source": source}
        render_runs.write_json(payload)
    else:
        render_runs.print_runs(runs)
