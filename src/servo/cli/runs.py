"""``servo materialize`` and ``servo runs list|show``: run assets and read run history.

``materialize`` runs the selected assets with the embedded runner (zero services):
a live progress bar on stderr, a summary table (or ``--json``) on stdout. Exit code
0 when every selected asset succeeded, 1 when any failed or was skipped, 2 for usage
or definition errors. ``--home`` defaults to ``SERVO_HOME`` (or the config file's
``home``), else ``./.servo``.

``runs list`` and ``runs show`` read the published projections of the home.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servo.cli._session import CliState, configure, resolve_target

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.engine.schema import RunRow, TaskRow
    from servo.storage.base import ObjectStore

#: Exit code when a run ends with any asset failed, skipped or cancelled.
EXIT_RUN_FAILED = 1

runs_app = typer.Typer(help="Runs recorded in the Servo home.", no_args_is_help=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Servo home (default: $SERVO_HOME, else ./.servo).", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TenantOption = Annotated[
    str, typer.Option("--tenant", help="Tenant whose runs to use.", envvar="SERVO_TENANT")
]


def _state(ctx: typer.Context) -> CliState | None:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else None


def _open(ctx: typer.Context, home: Path | None) -> tuple[Settings, ObjectStore]:
    from servo.storage.factory import open_store

    settings = configure(_state(ctx))
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    return settings, open_store(settings.storage, settings.home)


def task_status(task: TaskRow) -> str:
    """A task's status as the CLI prints it (lower case)."""
    return task.status.lower()


def run_payload(run: RunRow, tasks: list[TaskRow]) -> dict[str, Any]:
    """``{"run_id", "status", "tasks": {asset: status}, ...}`` for ``--json``."""
    return {
        "run_id": run.run_id,
        "status": run.status.lower(),
        "tasks": {t.task_key: task_status(t) for t in tasks},
        "idempotency_key": run.idempotency_key,
        "selection": run.selection,
        "requested_at": run.requested_at,
        "completed_at": run.completed_at,
        "errors": {
            t.task_key: {"type": t.error_type, "message": t.error_message}
            for t in tasks
            if t.error_type is not None and t.status != "SUCCEEDED"
        },
    }


def materialize(
    ctx: typer.Context,
    selection: Annotated[
        str | None,
        typer.Argument(help="Assets to run, e.g. 'report', '+report', 'raw+' (default: all)."),
    ] = None,
    defs: Annotated[
        str | None,
        typer.Option("--defs", envvar="SERVO_DEFS", help="Definitions file, directory or module."),
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
    as_json: JsonOption = False,
) -> None:
    """Run the selected assets and their dependencies' results, on this machine."""
    from functools import partial

    from servo.cli import render_runs
    from servo.dispatch.local import ProcessRuntimeSpec
    from servo.engine.runner import EmbeddedRunner, RunnerOptions
    from servo.sdk.loader import load_definitions
    from servo.storage.factory import open_store

    settings, store = _open(ctx, home)
    definitions = load_definitions(resolve_target(defs))
    spec = None
    if processes:
        if definitions.source is None:
            raise typer.BadParameter("--processes needs definitions loaded from --defs")
        spec = ProcessRuntimeSpec(
            definitions.source, partial(open_store, settings.storage, settings.home)
        )
    options = RunnerOptions(
        tenant_id=tenant,
        concurrency=concurrency,
        pool="process" if processes else "thread",
        process_spec=spec,
    )
    with EmbeddedRunner(store, definitions, options) as runner:
        start = runner.start_run(selection, idempotency_key)
        with render_runs.Progress(enabled=not as_json, resumed=start.resumed) as progress:
            run = runner.wait(start.run_id, progress.update)
        tasks = runner.state.tasks_of(start.run_id)
    if as_json:
        render_runs.write_json(run_payload(run, tasks))
    else:
        render_runs.print_run(run, tasks)
    if run.status != "SUCCEEDED":
        raise typer.Exit(EXIT_RUN_FAILED)


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """List the runs of the home, newest first."""
    from servo.cli import render_runs
    from servo.engine.snapshot import SnapshotReader

    _, store = _open(ctx, home)
    runs = sorted(
        SnapshotReader(store, tenant, "default").load().runs(),
        key=lambda r: r.requested_at,
        reverse=True,
    )
    if as_json:
        render_runs.write_json({"runs": [render_runs.run_summary(r) for r in runs]})
    else:
        render_runs.print_runs(runs)


@runs_app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    home: HomeOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Show one run and the status of each of its assets."""
    from servo.cli import render_runs
    from servo.engine.snapshot import SnapshotReader
    from servo.errors import ServoError

    _, store = _open(ctx, home)
    snapshot = SnapshotReader(store, tenant, "default").load()
    run = snapshot.run(run_id)
    if run is None:
        raise ServoError(f"no run {run_id!r} in this home; 'servo runs list' shows the runs")
    tasks = snapshot.tasks_of(run_id)
    if as_json:
        render_runs.write_json(run_payload(run, tasks))
    else:
        render_runs.print_run(run, tasks)
