"""The doctor's checks and repair as a library, on a home built without the CLI."""

from __future__ import annotations

from pathlib import Path

from servo.config.settings import Settings
from servo.engine.compactor import Compactor
from servo.engine.ledger import LedgerWriter
from servo.engine.manifest import ManifestStore
from servo.engine.snapshot import SnapshotReader
from servo.maintenance.doctor import FindingKind, diagnose_home
from servo.maintenance.repair import repair_home
from servo.storage.local import LocalObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE, lifecycle
from tests.compaction import compact_paths


def build(home: Path) -> tuple[Settings, LocalObjectStore]:
    store = LocalObjectStore(home, fsync=False)
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    compactor = Compactor(store, TENANT, WORKSPACE)
    for i in range(3):
        compact_paths(
            compactor, store, [writer.append(lifecycle(f"r{i}", 2, start=1_000_000 * (i + 1)))]
        )
    return Settings(home=home), store


def test_healthy(tmp_path: Path) -> None:
    settings, store = build(tmp_path)
    report = diagnose_home(settings, store)
    assert report.healthy, report.findings
    assert report.to_json()["runs"] == 3


def test_a_missing_projection_file_is_rebuilt(tmp_path: Path) -> None:
    settings, store = build(tmp_path)
    manifest = SnapshotReader(store, TENANT, WORKSPACE).load().manifest
    assert manifest is not None
    victim = manifest.files_of("tasks").files[-1]
    (tmp_path / victim).unlink()
    fresh = LocalObjectStore(tmp_path, fsync=False)  # no decoded file cached
    report = diagnose_home(settings, fresh)
    [finding] = report.findings
    assert finding.kind == FindingKind.PROJECTION_UNREADABLE and finding.path == victim
    result = repair_home(settings, fresh, report)
    assert result.quarantined == []  # nothing left to move aside
    assert result.rebuilt_projections == [(TENANT, WORKSPACE, manifest.generation + 1)]
    assert diagnose_home(settings, LocalObjectStore(tmp_path, fsync=False)).healthy
    runs = SnapshotReader(fresh, TENANT, WORKSPACE).load().runs()
    assert {r.run_id: r.status for r in runs} == {f"r{i}": "SUCCEEDED" for i in range(3)}


def test_projections_behind_the_ledger_are_caught_up(tmp_path: Path) -> None:
    settings, store = build(tmp_path)
    LedgerWriter(store, TENANT, WORKSPACE).append(lifecycle("late", 1, start=9_000_000))
    report = diagnose_home(settings, store)
    assert {f.kind for f in report.findings} == {FindingKind.PROJECTIONS_DISAGREE}
    assert all("late" in f.run_ids for f in report.findings if f.run_ids)
    repair_home(settings, store, report)
    assert diagnose_home(settings, store).healthy
    assert SnapshotReader(store, TENANT, WORKSPACE).load().run("late") is not None


def test_an_old_unreadable_manifest_leaves_no_hole_in_the_chain(tmp_path: Path) -> None:
    """Probing for the newest generation needs 1..latest: a filler takes the slot."""
    settings, store = build(tmp_path)
    manifests = ManifestStore(store, TENANT, WORKSPACE)
    newest = manifests.latest_generation()
    assert newest == 3
    (tmp_path / manifests.path(2)).write_bytes(b'{"format": 1, "gener')
    report = diagnose_home(settings, store)
    assert [f.kind for f in report.findings] == [FindingKind.MANIFEST_UNREADABLE]
    result = repair_home(settings, store, report)
    assert [q.kind for q in result.quarantined] == ["manifest"]
    assert (tmp_path / result.quarantined[0].moved_to).read_bytes() == b'{"format": 1, "gener'
    assert [manifests.load(g).generation for g in range(1, 5)] == [1, 2, 3, 4]
    assert manifests.load(2).tables == manifests.load(1).tables
    store.delete(manifests.hint_path)  # without the hint, probing still finds the newest
    assert ManifestStore(store, TENANT, WORKSPACE).latest_generation() == 4
    assert diagnose_home(settings, store).healthy
