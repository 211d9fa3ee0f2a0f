"""Run the catalog's Alembic migrations from code (the CLI, tests and services share it).

There is no ``alembic.ini``: the script location is this package's ``migrations``
folder and the connection is passed in. Migrations run as the connecting user,
which must be allowed to create tables (and, on PostgreSQL, the ``servo_app``
role the first time: ``CREATEROLE``, or create the role beforehand); the
application itself then acts as ``servo_app`` (ADR 0007).

A new, empty SQLite file skips Alembic (`create_fresh`): importing it and replaying
every revision cost about half a second of a first ``servo materialize``, while the
declared metadata (`servo.catalog.schema`) builds the same schema directly — a test
compares the two — and stamping the head revision lets later migrations (and
``servo catalog migrate``) start from there as if Alembic had built it.
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
HEAD_REVISION: Final = "0003"


#: Alembic's own bookkeeping table, declared as Alembic creates it (name, column,
#: primary key name), so that a file stamped without Alembic is indistinguishable.
_VERSIONS = sa.MetaData()
alembic_version = sa.Table(
    "alembic_version",
    _VERSIONS,
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def create_fresh(connection: sa.Connection) -> bool:
    """Create the head schema in an empty SQLite database and stamp the head revision.

    Runs in the caller's (write) transaction, so two processes opening the same new
    file queue on the lock and the second finds the tables. A database holding any
    table is left alone (False): it is migrated by Alembic as before.

    Returns:
        True when the schema was created here.
    """
    from servo.catalog.schema import metadata

    if connection.dialect.name != "sqlite":
        raise ValueError("only a SQLite catalog is created without Alembic")
    existing = connection.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).scalar()
    if existing:
        return False
    metadata.create_all(connection, checkfirst=False)
    _VERSIONS.create_all(connection, checkfirst=False)
    connection.execute(alembic_version.insert().values(version_num=HEAD_REVISION))
    log.info("catalog.created", backend="sqlite", revision=HEAD_REVISION)
    return True


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
