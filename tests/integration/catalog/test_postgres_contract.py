"""The catalog contract against a real PostgreSQL (row-level security on, as servo_app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servo.catalog import SqlCatalog, open_catalog
from servo.config.settings import DatabaseSettings, Settings
from tests.unit.catalog.contract import CatalogContract

pytestmark = pytest.mark.integration


class TestPostgresCatalog(CatalogContract):
    keyset_examples = 25

    @pytest.fixture
    def catalog(self, postgres_url: str, tmp_path: Path) -> Iterator[SqlCatalog]:
        settings = Settings(home=tmp_path, database=DatabaseSettings(url=postgres_url))
        with open_catalog(settings) as catalog:
            yield catalog
