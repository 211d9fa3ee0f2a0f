"""The migrations build exactly the declared schema on PostgreSQL, RLS included."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from servo.catalog.migrate import HEAD_REVISION, downgrade, stored_revision, upgrade
from servo.catalog.schema import TABLES, metadata
from tests.integration.conftest import PostgresDatabases
from tests.unit.catalog.schema_dump import postgres_schema

pytestmark = pytest.mark.integration


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool
    )


def test_migrated_postgres_schema_equals_the_declared_metadata(
    postgres_url: str, postgres_databases: PostgresDatabases
) -> None:
    declared_name = postgres_databases.create()
    migrated, declared = _engine(postgres_url), _engine(postgres_databases.url(declared_name))
    try:
        with declared.begin() as connection:
            metadata.create_all(connection)
        with migrated.connect() as left, declared.connect() as right:
            left_schema, right_schema = postgres_schema(left), postgres_schema(right)
            assert left_schema == right_schema
            assert len(left_schema["policies"]) == 4 * len(TABLES)
            assert all(rls and forced for _, rls, forced in left_schema["row_security"])
            assert stored_revision(left) == HEAD_REVISION
            assert compare_metadata(MigrationContext.configure(left), metadata) == []
    finally:
        migrated.dispose()
        declared.dispose()
        postgres_databases.drop_later(declared_name)


def test_downgrade_and_upgrade_again_keep_the_role(postgres_url: str) -> None:
    engine = _engine(postgres_url)
    try:
        assert downgrade(engine, "base") == (HEAD_REVISION, None)
        with engine.connect() as connection:
            assert set(sa.inspect(connection).get_table_names()) == {"alembic_version"}
            role = connection.exec_driver_sql(
                "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                "WHERE rolname = 'servo_app'"
            ).one()
            assert tuple(role) == (False, False, False)  # cluster-wide: kept for other databases
        assert upgrade(engine) == (None, HEAD_REVISION)
    finally:
        engine.dispose()
