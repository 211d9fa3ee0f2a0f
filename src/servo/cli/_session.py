"""What every command needs first: settings, logging, the definitions, the catalog.

A catalog is *configured* when ``database.url`` (``SERVO_DATABASE_URL``) is set, or
when the home already holds the embedded SQLite catalog (``{home}/catalog.db``,
created by the first ``servo materialize``). ``servo runs ...`` then read it. ``servo
assets`` and ``servo lineage`` read the definitions whenever they are found (the same
search as ``servo plan``: `find_target`), because the code is the source of truth for
what is defined, and the catalog (what was registered, ADR 0007) with ``--catalog``
or when no definitions are found; see `servo.cli.reads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from servo.errors import DefinitionError

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.sdk.definitions import Definitions

#: Loaded when neither ``--defs`` nor ``SERVO_DEFS`` is given and it exists.
DEFAULT_DEFS = "definitions.py"
#: The embedded catalog's file under the home (``servo.catalog.sqlite_file.SQLITE_FILE``,
#: repeated here so that deciding where to read does not import SQLAlchemy).
CATALOG_FILE = "catalog.db"


@dataclass(frozen=True, slots=True)
class CliState:
    """Global options, kept on the typer context.

    Attributes:
        config: the ``--config`` file, or None to search the default locations.
    """

    config: Path | None = None


def configure(state: CliState | None) -> Settings:
    """Load settings (``--config``, files, ``SERVO_*``) and configure logging from them."""
    from servo.config.settings import load_settings
    from servo.observability.logging import configure_logging

    settings = load_settings(config_file=state.config if state else None)
    configure_logging(settings.log.level, settings.log.format)
    return settings


def with_home(settings: Settings, home: Path | None) -> Settings:
    """The settings with ``--home`` applied when given.

    Raises:
        HomeError: the home is a file, or neither it nor its parent exists.
    """
    from servo.storage.home import check_home

    chosen = settings if home is None else settings.model_copy(update={"home": home})
    check_home(Path(chosen.home), write=False)
    return chosen


def tasks_run_elsewhere(settings: Settings) -> bool:
    """Whether a remote reconciler drives runs (``cloud.provider`` gcp or celery)."""
    return settings.cloud.provider in ("gcp", "celery")


def catalog_configured(settings: Settings) -> bool:
    """Whether reading commands should use the catalog (see the module docstring).

    With ``cloud.provider: gcp`` or ``celery`` they read the published projections in the configured
    store instead: the reconciler projects them into the PostgreSQL catalog
    (``database.url``) in the background, so the catalog trails them.
    """
    if tasks_run_elsewhere(settings):
        return False
    return settings.database.url is not None or (Path(settings.home) / CATALOG_FILE).is_file()


def find_target(defs: str | None, cwd: Path | None = None) -> str | None:
    """The definitions target: ``--defs``/``SERVO_DEFS``, else ./definitions.py, else None."""
    if defs:
        return defs
    candidate = (cwd or Path.cwd()) / DEFAULT_DEFS
    return str(candidate) if candidate.is_file() else None


def resolve_target(defs: str | None, cwd: Path | None = None) -> str:
    """The definitions target (`find_target`); a `DefinitionError` when there is none."""
    target = find_target(defs, cwd)
    if target is not None:
        return target
    raise DefinitionError(
        f"no definitions to load: pass --defs PATH, set SERVO_DEFS, or run where {DEFAULT_DEFS} is"
    )


def open_session(state: CliState | None, defs: str | None) -> Definitions:
    """Configure settings and logging, then load the definitions."""
    from servo.sdk.loader import load_definitions

    configure(state)
    return load_definitions(resolve_target(defs))
