"""Startup salvage: what a runner would fail to read is set aside, then rebuilt."""

from __future__ import annotations

import os
from pathlib import Path

from servo.engine.compactor import Compactor
from servo.engine.ledger import LedgerReader, LedgerWriter, ledger_prefix
from servo.engine.projections import clear_cache
from servo.engine.replay import replay_and_compare
from servo.maintenance.salvage import salvage_scope
from servo.storage import _files
from servo.storage.local import LocalObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE, lifecycle
from tests.compaction import compact_paths


def home(tmp_path: Path) -> tuple[LocalObjectStore, list[str]]:
    """Two runs written to the ledger and folded."""
    store = LocalObjectStore(tmp_path, fsync=False)
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    paths = [writer.append(lifecycle(run_id, 2)) for run_id in ("r1", "r2")]
    compact_paths(Compactor(store, TENANT, WORKSPACE), store, paths)
    return store, paths


def tear(store: LocalObjectStore, path: str) -> bytes:
    file = store.root / path
    data = file.read_bytes()[:20]
    file.write_bytes(data)
    return data


def test_a_healthy_home_is_left_alone(tmp_path: Path) -> None:
    store, _ = home(tmp_path)
    before = sorted(store.list_prefix(""))
    report = salvage_scope(store, TENANT, WORKSPACE)
    assert report.quarantined == [] and report.rebuilt_generation is None
    assert sorted(store.list_prefix("")) == before


def test_a_torn_unfolded_batch_is_set_aside_and_the_projections_rebuilt(
    tmp_path: Path,
) -> None:
    store, _ = home(tmp_path)
    unfolded = LedgerWriter(store, TENANT, WORKSPACE).append(lifecycle("r3", 2))
    torn = tear(store, unfolded)

    report = salvage_scope(store, TENANT, WORKSPACE)

    [moved] = report.quarantined
    assert (moved.path, moved.kind) == (unfolded, "ledger")
    assert store.get(moved.moved_to).data == torn
    # The batch's number stays taken, holding no events: no hole for recovery.
    assert LedgerReader(store).read(unfolded) == []
    assert report.rebuilt_generation is not None
    compared = replay_and_compare(store, TENANT, WORKSPACE)
    assert compared.equal and compared.replay.unreadable == ()
    assert {r.run_id for r in compared.replay.state.rows("runs")} == {"r1", "r2"}


def test_a_torn_projection_file_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    store, _ = home(tmp_path)
    [parquet, *_] = sorted(store.list_prefix(f"projections/{TENANT}/{WORKSPACE}/tables/runs/"))
    tear(store, parquet)
    clear_cache()  # as in a new process: the writer's cache still holds the good table

    report = salvage_scope(store, TENANT, WORKSPACE)

    assert [(q.path, q.kind) for q in report.quarantined] == [(parquet, "projection")]
    compared = replay_and_compare(store, TENANT, WORKSPACE)
    assert compared.equal
    assert {r.run_id for r in compared.replay.state.rows("runs")} == {"r1", "r2"}


def test_temporary_files_of_killed_writes_are_collected_at_startup(tmp_path: Path) -> None:
    store, _ = home(tmp_path)
    folder = store.root / ledger_prefix(TENANT, WORKSPACE) / "batches"
    dead = 2**22 + 12345  # above the largest pid Linux hands out: no such process
    left = folder / f".tmp-{dead}-{_files.TOKEN}-0"
    live = folder / f".tmp-{os.getpid()}-{_files.TOKEN}-1"
    for path in (left, live):
        path.write_bytes(b"half")
    salvage_scope(store, TENANT, WORKSPACE)
    assert not left.exists() and live.exists()


def test_a_torn_run_request_is_moved_away_freeing_its_path(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, fsync=False)
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    request = lifecycle("r1", 1)[0]
    assert writer.append_at("runs/r1/requested", request)
    tear(store, writer.path_for("runs/r1/requested"))

    [moved] = salvage_scope(store, TENANT, WORKSPACE).quarantined

    assert moved.path == writer.path_for("runs/r1/requested")
    assert store.head(moved.path) is None  # the run can be requested again
    assert writer.append_at("runs/r1/requested", request)
