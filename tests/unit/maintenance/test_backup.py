"""Backup and restore as a library: consistent as of one generation while a run
writes, refused when they cannot be done, and a restored home equal to its ledger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from servo.config.settings import Settings
from servo.engine.compactor import Compactor
from servo.engine.ledger import LedgerWriter
from servo.engine.manifest import ManifestStore
from servo.engine.replay import replay_and_compare
from servo.maintenance.backup import MARKER, BackupError, backup, restore
from servo.maintenance.doctor import diagnose_home
from servo.maintenance.repair import repair_home
from servo.storage.base import ObjectStore, StoredObject
from servo.storage.local import LocalObjectStore
from servo.storage.memory import MemoryObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE, lifecycle
from tests.compaction import compact_paths

SCOPE = (TENANT, WORKSPACE)


class WritingMeanwhile(LocalObjectStore):
    """A home in which a run publishes once more while the backup copies the first
    projection file (after the backup chose its generation)."""

    def __init__(self, root: Path, meanwhile: Callable[[], None]) -> None:
        super().__init__(root, fsync=False)
        self._meanwhile: Callable[[], None] | None = None
        self._armed = meanwhile

    def arm(self) -> None:
        self._meanwhile = self._armed

    def get(self, path: str) -> StoredObject:
        if "/tables/" in path and self._meanwhile is not None:
            run, self._meanwhile = self._meanwhile, None
            run()
        return super().get(path)


def publish_runs(store: ObjectStore, first: int, count: int) -> None:
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    compactor = Compactor(store, TENANT, WORKSPACE)
    for i in range(first, first + count):
        compact_paths(
            compactor, store, [writer.append(lifecycle(f"r{i}", 2, start=1_000_000 * (i + 1)))]
        )
        store.put_if_absent(f"outputs/a/__all__/r{i}.json", b"1")


def rebuild(home: Path, store: ObjectStore) -> Callable[[], None]:
    def run() -> None:
        settings = Settings(home=home)
        repair_home(settings, store, diagnose_home(settings, store), rebuild=True)

    return run


def test_a_backup_is_as_of_the_generation_chosen_first_while_a_run_writes(
    tmp_path: Path,
) -> None:
    source = WritingMeanwhile(tmp_path / "home", lambda: publish_runs(source, 3, 1))
    publish_runs(source, 0, 3)
    chosen = ManifestStore(source, *SCOPE).latest_generation()
    dest = MemoryObjectStore()
    source.arm()

    report = backup(source, dest, "dest")

    assert ManifestStore(source, *SCOPE).latest_generation() == chosen + 1  # it did write
    assert report.generations == {SCOPE: chosen}
    copied = ManifestStore(dest, *SCOPE)
    assert copied.latest_generation() == chosen  # the chain 1..N, not N+1
    manifest = copied.latest()
    assert manifest is not None
    for table in manifest.tables.values():
        for path in table.files:
            assert dest.head(path) is not None
    ledger = list(dest.list_prefix("ledger/"))
    assert ledger == list(source.list_prefix("ledger/"))  # the later run's events too
    assert dest.head("outputs/a/__all__/r3.json") is not None
    assert dest.head(MARKER) is not None

    target_home = tmp_path / "restored"
    target = LocalObjectStore(target_home, fsync=False)
    restore(dest, target, "dest", str(target_home), rebuild=rebuild(target_home, target))

    compared = replay_and_compare(target, TENANT, WORKSPACE)
    assert compared.equal and not compared.replay.unreadable
    runs = sorted(r.run_id for r in compared.replay.state.rows("runs"))
    assert runs == ["r0", "r1", "r2", "r3"]  # r3: folded from the ledger, after N
    assert diagnose_home(Settings(home=target_home), target).healthy


def test_refusals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = LocalObjectStore(home, fsync=False)
    publish_runs(source, 0, 1)
    taken = MemoryObjectStore()
    taken.put_if_absent("something", b"x")
    with pytest.raises(BackupError, match="the backup destination elsewhere is not empty"):
        backup(source, taken, "elsewhere")

    noop = rebuild(tmp_path, MemoryObjectStore())
    with pytest.raises(BackupError, match="there is no Servo backup at nowhere"):
        restore(MemoryObjectStore(), MemoryObjectStore(), "nowhere", "h", rebuild=noop)
    with pytest.raises(BackupError, match=f"is not a finished Servo backup \\({MARKER} is missing"):
        restore(taken, MemoryObjectStore(), "half", "h", rebuild=noop)

    good = MemoryObjectStore()
    backup(source, good, "good")
    with pytest.raises(BackupError, match="the Servo home h is not empty: restore into a new"):
        restore(good, source, "good", "h", rebuild=noop)
    locked = MemoryObjectStore()
    locked.put_if_absent("locks/home.lock", b"1\n")  # the restore's own lock is no content
    restore(good, locked, "good", "h", rebuild=lambda: None)

    damaged = MemoryObjectStore()
    for path in good.list_prefix(""):
        if not path.startswith("ledger/"):
            damaged.put_if_absent(path, good.get(path).data)
    with pytest.raises(BackupError, match=r"the backup at damaged is incomplete: \d+ of \d+"):
        restore(damaged, MemoryObjectStore(), "damaged", "h", rebuild=noop)
