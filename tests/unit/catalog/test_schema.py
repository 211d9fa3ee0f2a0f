"""The migrations build exactly the declared schema (SQLite); the head revision is known."""

from __future__ import annotations

import warnings
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from servo.catalog.migrate import HEAD_REVISION, downgrade, head_revision, stored_revision, upgrade
from servo.catalog.schema import TABLES, metadata
from tests.unit.catalog.schema_dump import sqlite_schema


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    assert head_revision() == HEAD_REVISION


def _engine(path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{path}", poolclass=sa.NullPool)


def test_migrated_sqlite_schema_equals_the_declared_metadata(tmp_path: Path) -> None:
    migrated, declared = _engine(tmp_path / "migrated.db"), _engine(tmp_path / "declared.db")
    try:
        assert upgrade(migrated) == (None, HEAD_REVISION)
        metadata.create_all(declared)
        with migrated.connect() as left, declared.connect() as right:
            assert sqlite_schema(left) == sqlite_schema(right)
            assert stored_revision(left) == HEAD_REVISION
            with warnings.catch_warnings():  # SQLite cannot reflect expression indexes;
                # sqlite_schema above compares their DDL instead
                warnings.filterwarnings(
                    "ignore", "Skipped unsupported reflection", sa.exc.SAWarning
                )
                warnings.filterwarnings("ignore", "autogenerate skipping", UserWarning)
                assert compare_metadata(MigrationContext.configure(left), metadata) == []
    finally:
        migrated.dispose()
        declared.dispose()


def test_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "catalog.db")
    try:
        upgrade(engine)
        assert upgrade(engine) == (HEAD_REVISION, HEAD_REVISION)  # idempotent
        assert downgrade(engine, "base") == (HEAD_REVISION, None)
        with engine.connect() as connection:
            names = set(sa.inspect(connection).get_table_names())
        assert names.isdisjoint(t.name for t in TABLES)
        assert upgrade(engine) == (None, HEAD_REVISION)
    finally:
        engine.dispose()
