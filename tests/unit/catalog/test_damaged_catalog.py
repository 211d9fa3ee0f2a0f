"""A damaged or read-only SQLite catalog in the home: one clear error, no driver noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo.catalog.catalog import is_damaged, open_catalog
from servo.config.settings import Settings
from servo.errors import CatalogCorruptError, CatalogError, HomeError


def test_a_damaged_file_names_itself_and_doctor(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").write_bytes(b"not a database at all" * 40)
    with pytest.raises(CatalogCorruptError) as raised:
        open_catalog(Settings(home=tmp_path))
    message = str(raised.value)
    assert str(tmp_path / "catalog.db") in message
    assert f"servo doctor --home {tmp_path} --repair" in message


def test_a_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("x")
    with pytest.raises(HomeError, match="not a directory"):
        open_catalog(Settings(home=home))


def test_damage_markers() -> None:
    assert is_damaged(CatalogError("catalog.revision: file is not a database"))
    assert is_damaged(CatalogError("x: database disk image is malformed"))
    assert not is_damaged(CatalogError("x: no such table: executions"))
