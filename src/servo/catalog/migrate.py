"""Run the catalog's Alembic migrations from code (the CLI, tests and services share it).

There is no ``alembic.ini``: the script location is this package's ``migrations``
folder and the connection is passed in. Migrations run as the connecting user,
which must be allowed to create tables (and, on PostgreSQL, the ``servo_app``
role the first time: ``CREATEROLE``, or create the role beforehand); the
application itself then acts as ``servo_app`` (ADR 0007).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from servo.observability.logging import get_logger

if TYPE_CHECKING:
    from alembic.config import Config

log = get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

#: The newest revision (a test checks it against the migration scripts); opening a
#: catalog compares the database with it without importing Alembic.
HEAD_REVISION: Final = "0002"


def stored_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in the database, or None when it was never migrated."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    value = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the catalog migrations have no head revision"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The database's revision as Alembic reads it, or None when never migrated."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database up to `revision` (default: the newest).

    Returns:
        The revisions before and after.
    """
    from alembic import command

    with engine.begin() as connection:
        before = current_revision(connection)
        command.upgrade(_config(connection), revision)
        after = current_revision(connection)
    if before != after:
        log.info("catalog.migrated", backend=engine.dialect.name, before=before, after=after)
    return before, after


def downgrade(engine: sa.Engine, revision: str) -> tuple[str | None, str | None]:
    """Migrate the database down to `revision` (``base`` removes every table).

    Returns:
        The revisions before and after.
    """
    from alembic import command

    with engine.begin() as connection:
        before = current_revision(connection)
        command.downgrade(_config(connection), revision)
        after = current_revision(connection)
    log.info("catalog.downgraded", backend=engine.dialect.name, before=before, after=after)
    return before, after
