"""The ``servo`` command: ``plan``, ``lineage``, ``assets``, ``materialize``, ``runs``,
the admin commands ``doctor``, ``gc``, ``backup``, ``restore``, ``catalog``, and
``serve`` (the HTTP worker / reconciler of the serverless mode).

Exit codes: 0 on success; 2 for usage errors and for definition, selection or
configuration errors (any `ServoError`; 75, EX_TEMPFAIL, when another process holds
the home lock: `servo.engine.home_lock`), which print one line to stderr,
``error: <message>``, and no traceback. With ``--json`` anywhere on the command
line the same errors are one JSON document on stdout instead,
``{"error": "<kind>", "message": "..."}``, with the same exit codes; the kind is
``usage`` for command-line errors and the error class otherwise (`error_kind`).

``-h`` is ``--help`` on every command. The options commands share are in
`servo.cli.options`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

from servo._version import __version__
from servo.cli._session import CliState, open_session
from servo.cli.options import ConfigOption, DefsOption, JsonOption, state_of
from servo.errors import ServoError

#: Exit code for usage, definition and configuration errors.
EXIT_USAGE = 2
#: Exit code when the user interrupts a command.
EXIT_ABORTED = 130

app = typer.Typer(
    name="servo",
    help="Servo: an asset-centric data orchestrator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"servo {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Servo: an asset-centric data orchestrator."""
    ctx.obj = CliState(config=config)


@app.command()
def plan(
    ctx: typer.Context,
    defs: DefsOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the execution plan: levels of assets that can run in parallel."""
    from servo.cli import render

    execution_plan = open_session(state_of(ctx), defs).graph.plan()
    if as_json:
        render.write_json(render.plan_payload(execution_plan))
    else:
        render.print_plan(execution_plan)


def _register_run_commands() -> None:
    from servo.cli import backup, catalog, lifecycle, reads, run_logs, run_show, values
    from servo.cli.cancel import cancel_run
    from servo.cli.celery import celery_app
    from servo.cli.doctor import doctor
    from servo.cli.emulate import emulate_app
    from servo.cli.gc import gc
    from servo.cli.runs import materialize, runs_app
    from servo.cli.serve import serve

    app.command("lineage")(reads.lineage)
    app.command("assets")(reads.assets)
    app.command()(materialize)
    app.command("doctor")(doctor)
    app.command("gc")(gc)
    app.command("backup")(backup.backup_home)
    app.command("restore")(backup.restore_home)
    app.command("serve")(serve)
    runs_app.command("cancel")(cancel_run)
    runs_app.command("resume")(lifecycle.resume_run)
    runs_app.command("retry")(lifecycle.retry_run)
    runs_app.command("show")(run_show.show_run)
    runs_app.command("logs")(run_logs.show_logs)
    app.add_typer(values.values_app, name="values")
    app.add_typer(runs_app, name="runs")
    app.add_typer(catalog.catalog_app, name="catalog")
    app.add_typer(emulate_app, name="emulate")
    app.add_typer(celery_app, name="celery")


_register_run_commands()


def error_kind(exc: BaseException) -> str:
    """The ``"error"`` of a JSON error: ``usage``, or the error class in snake case.

    ``SelectionError`` -> ``selection``, ``CatalogUnavailableError`` ->
    ``catalog_unavailable``, a plain `ServoError` -> ``error``.
    """
    if not isinstance(exc, ServoError):
        return "usage"
    name = type(exc).__name__.removesuffix("Error")
    if name == "Servo":
        return "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _fail(message: str, kind: str, as_json: bool, code: int = EXIT_USAGE) -> int:
    one_line = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    if as_json:
        sys.stdout.write(json.dumps({"error": kind, "message": one_line}, indent=2) + "\n")
    else:
        sys.stderr.write(f"error: {one_line}\n")
    return code


def run() -> NoReturn:
    """The ``servo`` script (and ``python -m servo``): run `main`, then exit at once.

    Once the command is done and its output flushed, the process ends with
    ``os._exit``: Arrow's native thread pools can abort the interpreter while it
    finalizes ("terminate called without an active exception", exit -6) after the
    command already succeeded. Everything Servo records is written (and closed) by
    then; only interpreter teardown is skipped.
    """
    import logging

    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not change the code
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (`run` exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    try:
        result = app(args=args, prog_name="servo", standalone_mode=False)
    except ServoError as exc:
        return _fail(str(exc), error_kind(exc), as_json, getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        if not as_json:
            sys.stderr.write("aborted\n")
            return EXIT_ABORTED
        return _fail("aborted", "aborted", as_json, EXIT_ABORTED)
    except typer.TyperException as exc:  # click usage errors (vendored by typer)
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message().rstrip() + "\n")
            return 0
        return _fail(exc.format_message(), error_kind(exc), as_json)
    return result if isinstance(result, int) else 0
