"""Fixtures for catalog tests: a migrated SQLite catalog in a temporary home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servo.catalog import SqlCatalog, open_catalog
from servo.config.settings import Settings


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings whose catalog is the default SQLite file under a fresh home."""
    return Settings(home=tmp_path / "home")


@pytest.fixture
def sqlite_catalog(sqlite_settings: Settings) -> Iterator[SqlCatalog]:
    """A fresh SQLite catalog (migrated when opened)."""
    with open_catalog(sqlite_settings) as catalog:
        yield catalog
