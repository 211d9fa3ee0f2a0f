"""``servo runs resume`` and ``servo runs retry``, and how a driven run ends on the CLI.

- ``servo runs resume RUN_ID`` drives an unfinished run again (any run, keyed or not:
  one stopped with Ctrl-C, or whose process died). Definitions: ``--defs``, else the
  run's recorded source, else ./definitions.py. A finished run is not run again: the
  command prints it and says so, exit 0 when it succeeded and 1 otherwise (the same
  codes a ``materialize`` that ended that way gives). Unknown run: ``error:``, exit 2.
- ``servo runs retry RUN_ID`` (re-execute from failure) starts a NEW run of the
  failed, skipped and cancelled assets of a finished run. Their dependencies that
  succeeded in that run are pinned to the values that run produced (not to later
  materializations), so the retry computes what the original run would have. A run
  with nothing to retry says so, exit 0; an unfinished run is resumed, not retried.
- A run driven by ``materialize``, ``resume`` or ``retry`` stops gracefully on Ctrl-C
  or SIGTERM (`servo.cli.interrupt`): it prints the run, the command that resumes it,
  and exits 130. Otherwise the exit code is 0 when the run succeeded, 1 when not.
- A repeated ``materialize --idempotency-key K`` whose run failed or was cancelled
  does not report the old result as if it were new: it names the run, its failed
  assets and the retry command, exit 1 (`refuse_failed_keyed_run`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servo.cli._session import configure, resolve_target, with_home
from servo.cli.options import ConfigOption, HomeOption, JsonOption, TenantOption, state_of
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.vocabulary import RunStatus, TaskStatus

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.engine import schema as s
    from servo.engine.controllers.run import Materialization
    from servo.runner import EmbeddedRunner, Progress, RunStart
    from servo.sdk.definitions import Definitions
    from servo.storage.base import ObjectStore

#: Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Exit code when a run ends with any asset failed, skipped or cancelled.
EXIT_RUN_FAILED = 1
#: Seconds running assets get to finish after Ctrl-C or SIGTERM, by default.
DEFAULT_GRACE_S = 10.0
#: Task statuses a retry runs again.
RETRIED = frozenset({TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED})

RunIdArgument = Annotated[str, typer.Argument(metavar="RUN_ID")]
DefsOption = Annotated[
    str | None,
    typer.Option(
        "--defs",
        envvar="SERVO_DEFS",
        help="Definitions (default: the run's recorded definitions, else ./definitions.py).",
        show_default=False,
    ),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", min=1, max=1024, help="Assets running at once.")
]
ProcessesOption = Annotated[
    bool, typer.Option("--processes", help="Run assets in worker processes, not threads.")
]
GraceOption = Annotated[
    float,
    typer.Option(
        "--grace",
        min=0,
        metavar="SECONDS",
        help="On Ctrl-C or SIGTERM, how long running assets may finish before the "
        "command stops (a second Ctrl-C stops at once).",
    ),
]


# ------------------------------------------------------------- driving a run
@contextmanager
def cli_watch(
    runner: EmbeddedRunner,
    start: RunStart,
    *,
    as_json: bool,
    grace_s: float,
    key: str | None = None,
) -> Iterator[Progress]:
    """How the CLI drives a run (a `servo.embedded.session.Watch`): a progress bar
    (unless `as_json`), Ctrl-C/SIGTERM stopping it gracefully; a repeated `key` whose
    run failed is refused first (`refuse_failed_keyed_run`)."""
    from servo.cli import render_runs
    from servo.cli.interrupt import graceful_stop

    refuse_failed_keyed_run(runner, start, key, as_json=as_json)
    with (
        graceful_stop(runner, grace_s),
        render_runs.Progress(enabled=not as_json, resumed=start.resumed) as progress,
    ):
        yield progress.update


def watch(runner: EmbeddedRunner, start: RunStart, *, as_json: bool, grace_s: float) -> s.RunRow:
    """Drive the run to its end (or a stop) inside `cli_watch`."""
    with cli_watch(runner, start, as_json=as_json, grace_s=grace_s) as on_progress:
        return runner.wait(start.run_id, on_progress)


def where_options(home: Path | None, tenant: str) -> str:
    """The options a command needs to find a run (`` --home H --tenant T``, or "")."""
    parts = []
    if home is not None:
        parts += ["--home", str(home)]
    if tenant != "default":
        parts += ["--tenant", tenant]
    return "".join(f" {part}" for part in parts)


def resume_command(run_id: str, home: Path | None, tenant: str) -> str:
    """The command that resumes `run_id` (with the options it needs to find it)."""
    return f"servo runs resume {run_id}{where_options(home, tenant)}"


def finish(
    run: s.RunRow,
    tasks: list[s.TaskRow],
    *,
    as_json: bool,
    interrupted: bool = False,
    resume: str = "",
    extra: Mapping[str, object] | None = None,
    where: str = "",
) -> None:
    """Print the run (table or JSON) and end the command with the run's exit code.

    `where` goes after the commands suggested for a failure (`where_options`).
    """
    from servo.cli import render_runs
    from servo.cli.runs import run_payload

    if as_json:
        payload = {**run_payload(run, tasks), **(extra or {})}
        if interrupted:
            payload.update(interrupted=True, resume=resume)
        render_runs.write_json(payload)
    else:
        render_runs.print_run(run, tasks, where)
    if interrupted:
        sys.stderr.write(f"interrupted: run {run.run_id} is unfinished; resume it with: {resume}\n")
        raise typer.Exit(EXIT_INTERRUPTED)
    if run.status != RunStatus.SUCCEEDED:
        raise typer.Exit(EXIT_RUN_FAILED)


def _not_succeeded(tasks: list[s.TaskRow]) -> str:
    return ", ".join(f"{t.task_key} ({t.status.lower()})" for t in tasks if t.status in RETRIED)


def refuse_failed_keyed_run(
    runner: EmbeddedRunner, start: RunStart, idempotency_key: str | None, *, as_json: bool
) -> None:
    """A repeated key whose run failed or was cancelled: say so and exit 1.

    Nothing to do for a new run, a run still unfinished (it is resumed) or one that
    succeeded (it is reported as before).
    """
    run = runner.state.run(start.run_id)
    if not start.resumed or run is None or run.status in (RunStatus.RUNNING, RunStatus.SUCCEEDED):
        return
    tasks = runner.state.tasks_of(start.run_id)
    message = (
        f"run {run.run_id} (idempotency key {idempotency_key!r}) already ended "
        f"{run.status.lower()}: {_not_succeeded(tasks)}; the key does not run it again. "
        f"To run those assets again: servo runs retry {run.run_id}"
    )
    if as_json:
        from servo.cli import render_runs
        from servo.cli.runs import run_payload

        render_runs.write_json({**run_payload(run, tasks), "message": message})
    sys.stderr.write(message + "\n")
    raise typer.Exit(EXIT_RUN_FAILED)


# ------------------------------------------------------------------ opening
def _recorded_defs_source(store: ObjectStore, tenant: str, run_id: str) -> str | None:
    """The run's recorded definitions source; raises when there is no such run."""
    from servo.engine import events as ev
    from servo.engine.ledger import LedgerReader, LedgerWriter
    from servo.errors import RunNotFoundError

    path = LedgerWriter(store, tenant, DEFAULT_WORKSPACE).path_for(f"runs/{run_id}/requested")
    if store.head(path) is None:
        raise RunNotFoundError(run_id)
    for event in LedgerReader(store).read(path):
        if isinstance(event.payload, ev.RunRequested):
            return event.payload.defs_source
    return None


def _load_definitions(defs: str | None, recorded: str | None) -> Definitions:
    from servo.errors import DefinitionError
    from servo.sdk.loader import load_definitions

    if defs or not recorded:
        return load_definitions(resolve_target(defs))
    try:
        return load_definitions(recorded)
    except DefinitionError as exc:
        raise DefinitionError(
            f"{exc} (the definitions the run was started with); pass --defs PATH"
        ) from exc


def _runner(
    settings: Settings,
    store: ObjectStore,
    definitions: Definitions,
    *,
    tenant: str,
    concurrency: int,
    processes: bool,
    purpose: str,
) -> AbstractContextManager[EmbeddedRunner]:
    """An embedded runner for the home, publishing into the catalog (as materialize's),
    holding the home lock (`purpose`: the command, for a refused one's message)."""
    from servo.embedded.session import RunRequest, open_runner, runner_options

    request = RunRequest(tenant=tenant, concurrency=concurrency, processes=processes)
    options = runner_options(definitions, request, settings)
    return open_runner(definitions, options, store, settings, purpose=purpose)


def _open(
    ctx: typer.Context, home: Path | None, tenant: str, run_id: str, defs: str | None
) -> tuple[Settings, ObjectStore, Definitions]:
    from servo.storage.factory import open_store

    settings = with_home(configure(state_of(ctx)), home)
    store = open_store(settings.storage, settings.home)
    recorded = _recorded_defs_source(store, tenant, run_id)
    return settings, store, _load_definitions(defs, recorded)


# ----------------------------------------------------------------- commands
def resume_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    defs: DefsOption = None,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    concurrency: ConcurrencyOption = 4,
    processes: ProcessesOption = False,
    grace: GraceOption = DEFAULT_GRACE_S,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume an unfinished run (stopped with Ctrl-C, or whose process died)."""
    from servo.runner import RunStart

    settings, store, definitions = _open(ctx, home, tenant, run_id, defs)
    opened = _runner(settings, store, definitions, tenant=tenant, concurrency=concurrency,
                     processes=processes, purpose="servo runs resume")  # fmt: skip
    with opened as runner:
        record = runner.run_record(run_id)
        assert record is not None  # its request object exists and was folded (or archived)
        found, tasks = record
        if found.status != RunStatus.RUNNING:
            hint = "" if found.status == RunStatus.SUCCEEDED else f"; servo runs retry {run_id}"
            sys.stderr.write(
                f"run {run_id} already finished ({found.status.lower()}); nothing to resume{hint}\n"
            )
            finish(found, tasks, as_json=as_json)
            return
        run = watch(runner, RunStart(run_id, resumed=True), as_json=as_json, grace_s=grace)
        interrupted = runner.interrupted
        tasks = runner.state.tasks_of(run_id)
    resume = resume_command(run_id, home, tenant)
    where = where_options(home, tenant)
    finish(run, tasks, as_json=as_json, interrupted=interrupted, resume=resume, where=where)


def retry_upstream(tasks: list[s.TaskRow]) -> dict[str, Materialization]:
    """The values a retry pins: what the run read from earlier runs, then what it made."""
    import json

    values: dict[str, Materialization] = {}
    for task in tasks:
        for name, location, fmt in json.loads(task.pinned_inputs or "[]"):
            values.setdefault(name, (location, fmt))
    for task in tasks:
        if task.status == TaskStatus.SUCCEEDED and task.output_location and task.output_format:
            values[task.asset_key] = (task.output_location, task.output_format)
    return values


def _retried_selection(
    run: s.RunRow, tasks: list[s.TaskRow]
) -> tuple[str, Mapping[str, Materialization]]:
    from servo.errors import ServoError

    if run.status == RunStatus.RUNNING:
        raise ServoError(
            f"run {run.run_id} is unfinished; resume it with 'servo runs resume {run.run_id}' "
            f"(or end it with 'servo runs cancel {run.run_id}' first)"
        )
    names = [t.asset_key for t in tasks if t.status in RETRIED]
    return ",".join(dict.fromkeys(names)), retry_upstream(tasks)


def retry_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    defs: DefsOption = None,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    concurrency: ConcurrencyOption = 4,
    processes: ProcessesOption = False,
    grace: GraceOption = DEFAULT_GRACE_S,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-run the failed, skipped and cancelled assets of a run, as a new run."""
    settings, store, definitions = _open(ctx, home, tenant, run_id, defs)
    opened = _runner(settings, store, definitions, tenant=tenant, concurrency=concurrency,
                     processes=processes, purpose="servo runs retry")  # fmt: skip
    with opened as runner:
        record = runner.run_record(run_id)
        assert record is not None  # its request object exists and was folded (or archived)
        found, old_tasks = record
        selection, upstream = _retried_selection(found, old_tasks)
        if not selection:
            if as_json:
                from servo.cli import render_runs

                nothing = {"run_id": run_id, "retry": None, "status": found.status.lower()}
                render_runs.write_json(nothing)
            sys.stderr.write(f"run {run_id} {found.status.lower()}: nothing to retry\n")
            return
        start = runner.start_run(selection, upstream=upstream)
        if not as_json:
            sys.stderr.write(f"retrying {selection} of run {run_id} as run {start.run_id}\n")
        run = watch(runner, start, as_json=as_json, grace_s=grace)
        interrupted = runner.interrupted
        tasks = runner.state.tasks_of(start.run_id)
    resume = resume_command(start.run_id, home, tenant)
    extra = {"retry_of": run_id}
    where = where_options(home, tenant)
    finish(
        run,
        tasks,
        as_json=as_json,
        interrupted=interrupted,
        resume=resume,
        extra=extra,
        where=where,
    )
