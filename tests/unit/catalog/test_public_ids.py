"""Public ids are ULIDs: no sequence shared by tenants; 0002 converts existing rows (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from servo.catalog import ExecutionSpec, MaterializationSpec, SqlCatalog, open_catalog
from servo.catalog.migrate import HEAD_REVISION, downgrade, upgrade
from servo.config.settings import Settings
from tests.unit.catalog.contract import pages
from tests.unit.catalog.migration_data import check_converted, check_downgraded, seed_0001


def _engine(path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{path}", poolclass=sa.NullPool)


@pytest.fixture
def two_catalogs(tmp_path: Path) -> Iterator[tuple[SqlCatalog, SqlCatalog]]:
    with (
        open_catalog(Settings(home=tmp_path / "alone")) as alone,
        open_catalog(Settings(home=tmp_path / "shared")) as shared,
    ):
        yield alone, shared


def _write(catalog: SqlCatalog, tenant: str, index: int) -> None:
    run = f"run-{index}"
    catalog.executions.create(tenant, ExecutionSpec(run, requested_at=1_000_000 + index))
    catalog.materializations.record(tenant, MaterializationSpec(run, "a", "loc", finished_at=index))


def test_a_tenants_ids_are_the_same_whatever_other_tenants_insert(
    two_catalogs: tuple[SqlCatalog, SqlCatalog],
) -> None:
    alone, shared = two_catalogs
    for index in range(5):
        _write(alone, "acme", index)
        _write(shared, "acme", index)
        for other in range(index * 3):  # another tenant, busier and busier, in between
            _write(shared, "globex", 100 * index + other)

    def ids(catalog: SqlCatalog) -> tuple[list[str], list[str]]:
        return (
            [e.id for e in catalog.executions.list("acme", limit=1000).items],
            [m.id for m in catalog.materializations.list("acme", limit=1000).items],
        )

    assert ids(alone) == ids(shared)  # nothing in acme's ids tells of globex's inserts
    executions, materializations = ids(shared)
    assert all(isinstance(i, str) and len(i) == 26 for i in executions + materializations)


def test_migration_0002_converts_existing_rows_and_back(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "catalog.db")
    try:
        upgrade(engine, "0001")
        with engine.begin() as connection:
            seed_0001(connection)
        assert upgrade(engine) == ("0001", HEAD_REVISION)
        with engine.connect() as connection:
            check_converted(connection)
        assert downgrade(engine, "0001") == (HEAD_REVISION, "0001")
        with engine.connect() as connection:
            check_downgraded(connection)
        upgrade(engine)
        with engine.connect() as connection:
            check_converted(connection)
    finally:
        engine.dispose()
    with open_catalog(Settings(home=tmp_path)) as catalog:  # and the catalog works on them
        _write(catalog, "acme", 7)
        everything = catalog.executions.list("acme", limit=1000).items
        # acme's own and the global runs, newest first (its new run was requested first)
        assert [e.execution_id for e in everything] == ["run5", "run3", "run2", "run0", "run-7"]
        assert pages(lambda **kw: catalog.executions.list("acme", **kw), 2) == list(everything)
