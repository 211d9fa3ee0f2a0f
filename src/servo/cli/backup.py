"""``servo backup DEST`` and ``servo restore SRC``: copy a home, and make one from a copy.

DEST and SRC are a directory, or a GCS prefix written ``gs://BUCKET/PREFIX``; the
home is the configured one (``--home``, ``SERVO_HOME``; a GCS store when
``storage.backend`` is ``gcs``). How the copy stays consistent while runs write, and
what a restore rebuilds, is `servo.maintenance.backup`.

- ``backup`` reads only: it takes no lock and works while a run is in progress.
  DEST must be empty (or not exist yet) and outside the home.
- ``restore`` writes a new home: it must be empty; it holds the home lock
  (`servo.engine.home_lock`), copies the backup, then rebuilds projections and
  catalog from the restored ledger. ``servo runs resume RUN_ID`` then finishes runs
  the backup caught unfinished. ``--defs`` registers the definitions in the new
  catalog (the next ``materialize`` does it anyway).

Exit codes: 0 done; 2 for a missing or unfinished backup, a non-empty destination or
home, and usage errors (one ``error:`` line); 75 when another process holds the home.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servo.cli._session import configure
from servo.cli.options import ConfigOption, HomeOption, JsonOption, state_of

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.maintenance.backup import CopyReport
    from servo.storage.base import ObjectStore

#: How a GCS location is written.
GCS_SCHEME = "gs://"


def open_location(spec: str, settings: Settings) -> ObjectStore:
    """The object store at `spec`: ``gs://BUCKET[/PREFIX]``, else a local directory.

    Raises:
        BackupError: a ``gs://`` location without a bucket, or a path that is a file.
    """
    from servo.maintenance.backup import BackupError

    if spec.startswith(GCS_SCHEME):
        bucket, _, prefix = spec.removeprefix(GCS_SCHEME).partition("/")
        if not bucket:
            raise BackupError(f"{spec}: name a bucket, e.g. gs://my-bucket/backups/servo")
        from servo.storage.gcs import GcsObjectStore

        return GcsObjectStore(bucket, prefix=prefix.strip("/"))
    path = Path(spec).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise BackupError(f"{path} is a file, not a directory: name a directory")
    from servo.storage.local import LocalObjectStore

    return LocalObjectStore(path, fsync=settings.storage.fsync)


def _settings(ctx: typer.Context, home: Path | None) -> Settings:
    settings = configure(state_of(ctx))
    return settings if home is None else settings.model_copy(update={"home": home})


def _inside(spec: str, settings: Settings) -> bool:
    """Whether the local location `spec` lies inside the local home's store."""
    if spec.startswith(GCS_SCHEME) or settings.storage.backend != "local":
        return False
    root = (Path(settings.home) / settings.storage.prefix).expanduser().absolute()
    return Path(spec).expanduser().absolute().is_relative_to(root)


def backup_home(
    ctx: typer.Context,
    dest: Annotated[str, typer.Argument(metavar="DEST", help="A new directory, or gs://B/P.")],
    home: HomeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy the home (ledger, projections, values) to DEST, consistently, even mid-run."""
    from servo.errors import HomeError
    from servo.maintenance.backup import BackupError, backup
    from servo.storage.factory import open_store

    settings = _settings(ctx, home)
    local = settings.storage.backend == "local"
    if local and not Path(settings.home).is_dir():
        raise HomeError(
            f"there is no Servo home at {Path(settings.home).absolute()}: nothing to back "
            "up; pass the home with --home (or SERVO_HOME)"
        )
    if _inside(dest, settings):
        raise BackupError(f"{dest} is inside the home: back up to a directory outside it")
    report = backup(
        open_store(settings.storage, settings.home), open_location(dest, settings), dest
    )
    _say("backed up", settings, dest, report, as_json)


def restore_home(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(metavar="SRC", help="A backup: a directory or gs://B/P.")
    ],
    home: HomeOption = None,
    defs: Annotated[
        str | None,
        typer.Option(
            "--defs",
            envvar="SERVO_DEFS",
            help="Definitions to register in the new catalog (default: the next "
            "'servo materialize' registers them).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the (new, empty) home from a backup, then rebuild projections and catalog."""
    from servo.engine.home_lock import HomeLock
    from servo.maintenance.backup import read_marker, restore
    from servo.storage.factory import open_store
    from servo.storage.home import check_home

    settings = _settings(ctx, home)
    backup_store = open_location(source, settings)
    read_marker(backup_store, source)  # a missing backup is said before a home is made
    check_home(Path(settings.home), write=True)
    where = str(Path(settings.home).absolute())
    with HomeLock(settings.home, "servo restore"):
        store = open_store(settings.storage, settings.home)
        report = restore(backup_store, store, source, where,
                         rebuild=lambda: _rebuild(settings, store, defs))  # fmt: skip
    _say("restored", settings, source, report, as_json)


def _rebuild(settings: Settings, store: ObjectStore, defs: str | None) -> None:
    """Projections and catalog of the restored home, from its ledger alone."""
    from servo.maintenance.doctor import diagnose_home
    from servo.maintenance.repair import repair_home

    definitions: Any = None
    if defs:
        from servo.sdk.loader import load_definitions

        definitions = load_definitions(defs)
    report = diagnose_home(settings, store)
    repair_home(settings, store, report, definitions, rebuild=True, create_catalog=True)


def _say(done: str, settings: Settings, where: str, report: CopyReport, as_json: bool) -> None:
    home = str(Path(settings.home).absolute())
    if as_json:
        from servo.cli.render import write_json

        write_json({"home": home, "location": where, done.replace(" ", "_"): True,
                    **report.to_json(), "vanished": report.vanished})  # fmt: skip
        return
    scopes = ", ".join(
        f"{t}/{w} at generation {g}" for (t, w), g in sorted(report.generations.items())
    )
    verb = f"backed up {home} to {where}" if done == "backed up" else f"restored {where} to {home}"
    typer.echo(f"{verb}: {report.objects} objects, {report.bytes} bytes ({scopes or 'empty'})")
    if done == "restored":
        typer.echo("unfinished runs resume with 'servo runs resume RUN_ID' ('servo runs list')")
