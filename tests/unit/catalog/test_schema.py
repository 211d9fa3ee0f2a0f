"""The migrations build exactly the declared schema (SQLite); the head revision is known."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from servo.catalog.catalog import open_catalog
from servo.catalog.migrate import (
    HEAD_REVISION,
    create_fresh,
    downgrade,
    head_revision,
    stored_revision,
    upgrade,
)
from servo.catalog.schema import TABLES, metadata
from servo.config.settings import Settings
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


def _whole_schema(connection: sa.Connection) -> dict[tuple[str, str], str | None]:
    """Every object of the file, Alembic's version table included."""
    rows = connection.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    )
    return {(row.type, row.name): row.sql for row in rows}


def test_a_new_sqlite_file_gets_the_migrated_schema_without_alembic(tmp_path: Path) -> None:
    migrated = _engine(tmp_path / "migrated.db")
    try:
        upgrade(migrated)
        open_catalog(Settings(home=tmp_path / "home")).close()  # the fast path
        fresh = _engine(tmp_path / "home" / "catalog.db")
        with migrated.connect() as left, fresh.connect() as right:
            assert _whole_schema(right) == _whole_schema(left)  # tables, columns, indexes
            assert stored_revision(right) == HEAD_REVISION
            assert right.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
                (HEAD_REVISION,)
            ]
        # Alembic takes the stamped file as its own: nothing to do, and it can go down
        assert upgrade(fresh) == (HEAD_REVISION, HEAD_REVISION)
        assert downgrade(fresh, "0001") == (HEAD_REVISION, "0001")
        assert upgrade(fresh) == ("0001", HEAD_REVISION)
        fresh.dispose()
    finally:
        migrated.dispose()


def test_a_file_with_tables_is_left_to_alembic(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "catalog.db")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE leftover (x INTEGER)")
            assert create_fresh(connection) is False
            assert stored_revision(connection) is None
    finally:
        engine.dispose()


def test_opening_a_new_sqlite_catalog_does_not_import_alembic(tmp_path: Path) -> None:
    code = (
        "import sys; from servo.catalog.catalog import open_catalog; "
        "from servo.config.settings import Settings; "
        f"open_catalog(Settings(home={str(tmp_path / 'home')!r})).close(); "
        "print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
