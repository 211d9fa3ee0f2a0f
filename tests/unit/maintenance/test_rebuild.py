"""``servo doctor --rebuild``: projections and catalog rebuilt from the ledger alone
equal, row by row, what the runs published incrementally.

The home is made by the ``servo`` command (in this process, for speed): a run with
a retried attempt, a failed and a skipped asset; its retry; a run cancelled while
nobody drove it; a run of a selection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from servo.cli.main import main
from servo.engine.schema import TABLES
from servo.engine.snapshot import SnapshotReader
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore

DEFS = """
import os
from pathlib import Path
from servo import asset
from servo.resilience.retry import RetryPolicy

FLAGS = Path(os.environ["REBUILD_FLAGS"])

@asset
def ok():
    return 1

@asset(retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=0))
def flaky(ok):
    failed = FLAGS / "flaky-failed"
    if not failed.exists():
        failed.write_text("once")
        raise RuntimeError("the first attempt fails")
    return ok + 1

@asset
def broken(ok):
    if (FLAGS / "broken").exists():
        raise ValueError("broken on purpose")
    return ok

@asset
def down(broken, flaky):
    return broken + flaky
"""

#: Catalog columns that say when a row was written, not what it holds.
_WRITTEN_AT = {"id", "created_at", "updated_at"}
_CATALOG_TABLES = ("executions", "execution_tasks", "materializations")


def projections(home: Path) -> tuple[int, dict[str, list[Any]]]:
    snapshot = SnapshotReader(LocalObjectStore(home, fsync=False), "default", "default").load()
    tables = {spec.name: sorted(snapshot.rows(spec.name), key=spec.key_of) for spec in TABLES}
    return snapshot.generation, tables


def catalog(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(home / "catalog.db") as db:
        found = {}
        for table in _CATALOG_TABLES:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            kept = ", ".join(c for c in columns if c not in _WRITTEN_AT)
            found[table] = sorted(db.execute(f"SELECT {kept} FROM {table}").fetchall(), key=repr)
        return found


def servo(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A home with several runs: failures, a retry, a cancel, a selection."""
    flags = tmp_path / "flags"
    flags.mkdir()
    monkeypatch.setenv("REBUILD_FLAGS", str(flags))
    defs = tmp_path / "defs.py"
    defs.write_text(DEFS, encoding="utf-8")
    home = tmp_path / "home"
    where = ["--defs", str(defs), "--home", str(home), "--json"]
    (flags / "broken").write_text("yes")
    assert servo("materialize", *where) == 1  # flaky retried; broken failed; down skipped
    first = SnapshotReader(LocalObjectStore(home), "default", "default").load().rows("runs")
    (flags / "broken").unlink()
    assert servo("runs", "retry", first[0].run_id, *where) == 0
    store = LocalObjectStore(home, fsync=False)
    with EmbeddedRunner(store, load_definitions(str(defs)), RunnerOptions()) as runner:
        idle = runner.start_run("ok", idempotency_key="never-driven").run_id
    assert servo("runs", "cancel", idle, "--home", str(home), "--json") == 0
    assert servo("materialize", "ok", *where) == 0
    return home, defs


def test_rebuild_equals_the_incremental_projections_and_catalog(
    home: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, defs = home
    generation, incremental = projections(path)
    statuses = sorted(r.status for r in incremental["runs"])
    assert statuses == ["CANCELLED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert any(a.attempt == 2 for a in incremental["attempts"])  # the retried attempt
    before = catalog(path)
    assert len(before["executions"]) == 4
    capsys.readouterr()

    assert servo("doctor", "--rebuild", "--home", str(path), "--defs", str(defs)) == 0

    said = capsys.readouterr().out
    assert "rebuilt the projections of default/default from the ledger" in said
    assert "rebuilt the catalog from the ledger" in said
    rebuilt_generation, rebuilt = projections(path)
    assert rebuilt_generation > generation  # new base files, published as a new generation
    for spec in TABLES:
        assert rebuilt[spec.name] == incremental[spec.name], spec.name
    assert catalog(path) == before
    assert servo("doctor", "--home", str(path)) == 0
