"""Migration 0002 converts existing rows to ULID public ids on PostgreSQL, and back.

The migration runs as the tables' owner without superuser rights, as in production:
row-level security is forced on the owner too, so a conversion that did not lift it
would see (and convert) only the global rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from servo.catalog import open_catalog
from servo.catalog.migrate import HEAD_REVISION, downgrade, upgrade
from servo.config.settings import DatabaseSettings, Settings
from tests.integration.conftest import PostgresDatabases
from tests.unit.catalog.contract import pages
from tests.unit.catalog.migration_data import check_converted, check_downgraded, seed_0001

pytestmark = pytest.mark.integration

_TABLES = (
    "assets",
    "asset_dependencies",
    "workflows",
    "executions",
    "execution_tasks",
    "materializations",
    "projector_state",
    "alembic_version",
)


def _engine(url: str, role: str | None = None) -> sa.Engine:
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool
    )
    if role is not None:

        @sa.event.listens_for(engine, "connect")
        def _as_owner(dbapi_connection: object, _record: object) -> None:
            with dbapi_connection.cursor() as cursor:  # type: ignore[attr-defined]
                cursor.execute(f"SET ROLE {role}")

    return engine


@pytest.fixture
def database_at_0001(postgres_databases: PostgresDatabases) -> Iterator[tuple[str, str]]:
    """An empty database migrated to 0001 and seeded, its tables owned by a new role
    without superuser rights; yields (url, owner role)."""
    name = postgres_databases.create()
    url = postgres_databases.url(name)
    owner = f"servo_owner_{uuid.uuid4().hex[:8]}"
    admin = _engine(url)
    try:
        upgrade(admin, "0001")
        with admin.begin() as connection:
            seed_0001(connection)
            connection.exec_driver_sql(f"CREATE ROLE {owner} NOLOGIN")
            connection.exec_driver_sql(f"GRANT {owner} TO current_user")
            connection.exec_driver_sql(f"GRANT CREATE ON SCHEMA public TO {owner}")
            for table in _TABLES:
                connection.exec_driver_sql(f"ALTER TABLE {table} OWNER TO {owner}")
        yield url, owner
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"REASSIGN OWNED BY {owner} TO current_user")
            connection.exec_driver_sql(f"DROP OWNED BY {owner}")
            connection.exec_driver_sql(f"DROP ROLE {owner}")
        admin.dispose()
        postgres_databases.drop_later(name)


def test_migration_0002_converts_every_tenants_rows_and_back(
    database_at_0001: tuple[str, str], tmp_path: Path
) -> None:
    url, owner = database_at_0001
    engine, admin = _engine(url, owner), _engine(url)
    try:
        assert upgrade(engine) == ("0001", HEAD_REVISION)
        with admin.connect() as connection:  # the superuser sees every tenant's rows
            check_converted(connection)
        assert downgrade(engine, "0001") == (HEAD_REVISION, "0001")
        with admin.connect() as connection:
            check_downgraded(connection)
        upgrade(engine)
        with admin.connect() as connection:
            check_converted(connection)
            forced = connection.exec_driver_sql(
                "SELECT bool_and(relforcerowsecurity) FROM pg_class "
                "WHERE relname IN ('assets', 'workflows', 'executions', 'materializations')"
            ).scalar()
            assert forced is True  # row-level security is forced again
    finally:
        engine.dispose()
        admin.dispose()
    settings = Settings(home=tmp_path, database=DatabaseSettings(url=url))
    with open_catalog(settings) as catalog:  # the application (servo_app) pages them
        everything = catalog.executions.list("acme", limit=1000).items
        assert [e.execution_id for e in everything] == ["run5", "run3", "run2", "run0"]
        assert pages(lambda **kw: catalog.executions.list("acme", **kw), 3) == list(everything)
