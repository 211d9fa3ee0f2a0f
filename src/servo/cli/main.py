"""The ``servo`` command: ``plan``, ``lineage``, ``assets``, ``materialize``, ``runs``.

Exit codes: 0 on success; 2 for usage errors and for definition, selection or
configuration errors (any `ServoError`), which print one line to stderr,
``error: <message>``, and no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from servo._version import __version__
from servo.cli._session import CliState, open_session
from servo.errors import ServoError

#: Exit code for usage, definition and configuration errors.
EXIT_USAGE = 2

app = typer.Typer(
    name="servo",
    help="Servo: an asset-centric data orchestrator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DefsOption = Annotated[
    str | None,
    typer.Option(
        "--defs",
        envvar="SERVO_DEFS",
        help="Definitions: a .py file, a directory with definitions.py, or a module "
        "name. Default: $SERVO_DEFS, else ./definitions.py.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"servo {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (default: the usual search path)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Servo: an asset-centric data orchestrator."""
    ctx.obj = CliState(config=config)


def _state(ctx: typer.Context) -> CliState | None:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else None


@app.command()
def plan(ctx: typer.Context, defs: DefsOption = None, as_json: JsonOption = False) -> None:
    """Show the execution plan: levels of assets that can run in parallel."""
    from servo.cli import render

    execution_plan = open_session(_state(ctx), defs).graph.plan()
    if as_json:
        render.write_json(render.plan_payload(execution_plan))
    else:
        render.print_plan(execution_plan)


def lineage_from_definitions(
    ctx: typer.Context,
    asset_name: str,
    defs: str | None,
    upstream: bool,
    downstream: bool,
    depth: int | None,
    as_json: bool,
) -> None:
    """Show what an asset depends on and what depends on it."""
    from servo.cli import render

    direction = render.direction_of(upstream, downstream)
    found = open_session(_state(ctx), defs).graph.lineage(asset_name, depth)
    if as_json:
        render.write_json(render.lineage_payload(found, direction))
    else:
        render.print_lineage(found, direction)


def assets_from_definitions(ctx: typer.Context, defs: str | None, as_json: bool) -> None:
    """List the assets with their dependencies, description, owner and tags."""
    from servo.cli import render

    definitions = open_session(_state(ctx), defs).assets
    if as_json:
        render.write_json({"assets": [render.asset_payload(d) for d in definitions.values()]})
    else:
        render.print_assets(definitions)


def _register_run_commands() -> None:
    from servo.cli import catalog
    from servo.cli.cancel import cancel_run
    from servo.cli.runs import materialize, runs_app

    # `assets` and `lineage` read the catalog when one is configured, else the
    # definitions (through the functions above).
    app.command("lineage")(catalog.lineage)
    app.command("assets")(catalog.assets)
    app.command()(materialize)
    runs_app.command("cancel")(cancel_run)
    app.add_typer(runs_app, name="runs")
    app.add_typer(catalog.catalog_app, name="catalog")


_register_run_commands()


def _fail(message: str) -> int:
    one_line = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    sys.stderr.write(f"error: {one_line}\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the ``servo`` script's entry point)."""
    try:
        result = app(args=argv, prog_name="servo", standalone_mode=False)
    except ServoError as exc:
        return _fail(str(exc))
    except typer.Abort:
        sys.stderr.write("aborted\n")
        return 130
    except typer.TyperException as exc:  # click usage errors (vendored by typer)
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message().rstrip() + "\n")
            return 0
        return _fail(exc.format_message())
    return result if isinstance(result, int) else 0
