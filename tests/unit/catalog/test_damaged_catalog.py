"""A damaged, read-only or full SQLite catalog in the home: one clear error, no driver noise."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from servo.catalog.catalog import open_catalog
from servo.catalog.sqlite import SqliteBackend
from servo.catalog.sqlite_file import is_damaged
from servo.config.settings import Settings
from servo.errors import CatalogCorruptError, CatalogDiskError, CatalogError, HomeError
from servo.observability import metrics
from servo.observability.logging import configure_logging


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


def _full(message: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize("message", ["database or disk is full", "disk I/O error"])
@pytest.mark.parametrize("step", ["create_fresh", "upgrade"])
def test_a_full_disk_while_migrating_names_the_file_logs_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str, step: str
) -> None:
    """A new file is created without Alembic (`create_fresh`), an older one migrated
    (`upgrade`): a full disk in either says the same."""

    def no_space(_target: object) -> None:
        raise _full(message)

    if step == "upgrade":  # a file with tables but no revision: Alembic migrates it
        with closing(sqlite3.connect(tmp_path / "catalog.db")) as older:
            older.execute("CREATE TABLE leftover (x INTEGER)")
    monkeypatch.setattr(f"servo.catalog.catalog.{step}", no_space)
    labels = {"operation": "catalog.migrate", "error_type": "CatalogDiskError"}
    before = metrics.sample("servo_catalog_errors_total", labels)
    configure_logging("DEBUG", "json")  # info must not be filtered out before capture
    try:
        with capture_logs() as logs, pytest.raises(CatalogDiskError) as raised:
            open_catalog(Settings(home=tmp_path))
    finally:
        configure_logging("WARNING", "console")  # the default
    assert str(tmp_path / "catalog.db") in str(raised.value)
    assert message in str(raised.value) and "free space" in str(raised.value)
    assert metrics.sample("servo_catalog_errors_total", labels) == before + 1
    (logged,) = [e for e in logs if e["event"] == "catalog.disk_error"]
    assert logged["log_level"] == "info" and logged["operation"] == "catalog.migrate"


def test_disk_errors_are_not_retried() -> None:
    backend = SqliteBackend()
    for message in ("database or disk is full", "disk I/O error"):
        assert backend.is_disk_error(_full(message)) and not backend.is_transient(_full(message))
    assert not backend.is_disk_error(_full("database is locked"))
