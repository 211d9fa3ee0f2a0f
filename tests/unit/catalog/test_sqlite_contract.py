"""The catalog contract against SQLite (the embedded default)."""

from __future__ import annotations

import pytest

from servo.catalog import SqlCatalog
from tests.unit.catalog.contract import CatalogContract


class TestSqliteCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self, sqlite_catalog: SqlCatalog) -> SqlCatalog:
        return sqlite_catalog
