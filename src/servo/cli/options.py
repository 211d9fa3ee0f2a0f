"""The options every ``servo`` command shares, as one set of ``Annotated`` types.

Each command that uses a setting declares it with the type here, so ``--config``,
``--home``, ``--defs``, ``--json`` and ``--tenant`` are spelled, documented and
defaulted alike everywhere, and are accepted after the subcommand
(``servo runs list --home h --json``).

``--config`` is also a root option (``servo --config c.yaml plan``). Given after a
subcommand, its callback replaces the root's `CliState`, so a command reads it
through ``ctx.find_root().obj`` like the root option and needs no code of its own:
the parameter a command declares is there to accept the option, not to be read.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from servo.cli._session import CliState


def _remember_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """Make a subcommand's ``--config`` the one every command reads (root state)."""
    if value is not None:
        root = ctx.find_root()
        state = root.obj if isinstance(root.obj, CliState) else CliState()
        root.obj = replace(state, config=value)
    return value


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings file (default: the usual search path).",
        show_default=False,
        callback=_remember_config,
    ),
]
HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Servo home (default: $SERVO_HOME, else ./.servo).", show_default=False
    ),
]
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
TenantOption = Annotated[
    str, typer.Option("--tenant", help="Tenant to act as.", envvar="SERVO_TENANT")
]


def state_of(ctx: typer.Context) -> CliState | None:
    """The global options (``--config``), from the root context."""
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else None
