"""``servo values show ASSET [--run RUN_ID] [--json]``: print a materialized value.

The value is the asset's latest materialization (the succeeded task of it that
finished last, in the home's published projections), or the one of ``--run``. The
text output names its location, format, size and rows, then a preview
(`servo.cli.value_preview`). A pickled object whose class lives in the definitions
is read after loading them (``--defs``, ``$SERVO_DEFS`` or ./definitions.py).
Unknown asset, no materialization, unknown run: one ``error:`` line, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servo.cli.options import (
    ConfigOption,
    DefsOption,
    HomeOption,
    JsonOption,
    TenantOption,
    state_of,
)
from servo.cli.render import iso_time
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.vocabulary import TaskStatus
from servo.errors import RunNotFoundError, ServoError, ValueNotFoundError

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.engine.schema import TaskRow
    from servo.storage.base import ObjectStore

values_app = typer.Typer(help="Values materialized in the Servo home.", no_args_is_help=True)


def find_materialization(
    store: ObjectStore, tenant: str, asset: str, run_id: str | None
) -> TaskRow:
    """The task that materialized `asset` (in `run_id`, else the latest).

    Raises:
        ServoError: the run is unknown, or the asset has no such materialization.
    """
    import pyarrow.compute as pc

    from servo.engine.snapshot import SnapshotReader
    from servo.graph.suggest import did_you_mean

    snapshot = SnapshotReader(store, tenant, DEFAULT_WORKSPACE).load()
    if run_id is not None and snapshot.run(run_id) is None:
        raise RunNotFoundError(run_id)
    tasks = snapshot.table("tasks")
    of_asset: list[TaskRow] = snapshot.rows(
        "tasks", tasks.filter(pc.equal(tasks.column("asset_key"), asset))
    )
    if run_id is not None:
        of_asset = [t for t in of_asset if t.run_id == run_id]
        if not of_asset:
            raise ValueNotFoundError(
                f"run {run_id} did not include asset {asset!r}; "
                f"'servo runs show {run_id}' lists its assets"
            )
    done = [t for t in of_asset if t.status == TaskStatus.SUCCEEDED and t.output_location]
    if done:
        return max(done, key=lambda t: (t.finished_at or 0, t.run_id))
    if run_id is not None:
        raise ValueNotFoundError(
            f"asset {asset!r} was not materialized in run {run_id} (it {of_asset[0].status.lower()}"
            f"); 'servo runs show {run_id} --errors' says why"
        )
    if of_asset:
        raise ValueNotFoundError(
            f"asset {asset!r} was never materialized in this home (no run of it succeeded); "
            f"run 'servo materialize {asset}'"
        )
    known = set(pc.unique(tasks.column("asset_key")).to_pylist())
    hint = did_you_mean(asset, known) or f"; run 'servo materialize {asset}'"
    raise ValueNotFoundError(f"no asset {asset!r} was ever run in this home{hint}")


def _load(store: ObjectStore, task: TaskRow, defs: str | None) -> Any:
    from servo.sdk.io import read_value

    assert task.output_location is not None and task.output_format is not None
    try:
        return read_value(store, task.output_location, task.output_format, task.asset_key)
    except (ImportError, AttributeError) as exc:  # a pickled class from the definitions
        from servo.cli._session import resolve_target
        from servo.sdk.loader import load_definitions

        cannot = (
            f"the value of {task.asset_key!r} is a pickled object whose class this command "
            f"cannot import ({type(exc).__name__}: {exc})"
        )
        try:
            load_definitions(resolve_target(defs))
            return read_value(store, task.output_location, task.output_format, task.asset_key)
        except (ServoError, ImportError, AttributeError) as again:
            raise ServoError(
                f"{cannot}; pass the definitions that define it with --defs (or SERVO_DEFS)"
                + (f" ({again})" if isinstance(again, ServoError) and defs else "")
            ) from exc


def _file(settings: Settings, location: str) -> str | None:
    if settings.storage.backend != "local" or location.startswith("inline:"):
        return None  # an inline value (ADR 0021) has no file
    return str(Path(settings.home) / settings.storage.prefix / location)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB ({n} bytes)" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


@values_app.command("show")
def show_value(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(metavar="ASSET")],
    run_id: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN_ID", help="That run's value (default: the latest)."),
    ] = None,
    home: HomeOption = None,
    defs: DefsOption = None,
    tenant: TenantOption = "default",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print an asset's latest (or one run's) value: a table's head, JSON, or a repr."""
    from servo.cli import render, value_preview
    from servo.cli._session import configure, with_home
    from servo.storage.factory import open_store

    settings = with_home(configure(state_of(ctx)), home)
    store = open_store(settings.storage, settings.home)
    task = find_materialization(store, tenant, asset, run_id)
    fmt = task.output_format or ""
    found = value_preview.preview(_load(store, task, defs), fmt)
    facts: dict[str, Any] = {
        "asset": asset,
        "run_id": task.run_id,
        "materialized_at": iso_time(task.finished_at),
        "location": task.output_location,
        "file": _file(settings, task.output_location or ""),
        "format": fmt,
        "size_bytes": task.output_size,
        "rows": task.output_rows,
    }
    if as_json:
        render.write_json({**facts, **value_preview.payload(found)})
        return
    lines = [
        f"asset     {asset}",
        f"run       {task.run_id}  ({facts['materialized_at']})",
        f"location  {task.output_location}",
        *([f"file      {facts['file']}"] if facts["file"] else []),
        f"format    {fmt}",
        f"size      {_size(task.output_size)}",
        f"rows      {'-' if task.output_rows is None else task.output_rows}",
    ]
    sys.stdout.write("\n".join(lines) + "\n\n" + value_preview.render_text(found, task.output_rows))
