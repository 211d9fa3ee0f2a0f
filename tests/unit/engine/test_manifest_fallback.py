"""An unreadable newest manifest: readers fall back, writers set it aside and go on."""

from __future__ import annotations

import pytest

from servo.engine.compactor import Compactor
from servo.engine.manifest import Manifest, ManifestStore, TableFiles
from servo.errors import CorruptObjectError, EngineError
from servo.observability import metrics
from servo.storage.base import StoredObject
from servo.storage.memory import MemoryObjectStore
from servo.testing.lifecycles import lifecycle
from tests.compaction import compact_events


def manifest(generation: int, **kw: object) -> Manifest:
    return Manifest(generation=generation, tenant_id="t1", workspace_id="w1", **kw)  # type: ignore[arg-type]


def published(store: MemoryObjectStore, last: int) -> ManifestStore:
    manifests = ManifestStore(store, "t1", "w1")
    for generation in range(1, last + 1):
        files = TableFiles(f"base-{generation}.parquet")
        manifests.publish(
            manifest(generation, tables={"runs": files}, last_processed_at=generation * 10)
        )
    return manifests


def tear(store: MemoryObjectStore, path: str, size: int = 20) -> bytes:
    """Truncate the object at `path` in place, as a power loss can."""
    stored = store.get(path)
    store.put_if_generation(path, stored.data[:size], stored.generation)
    return stored.data[:size]


def quarantined(store: MemoryObjectStore) -> dict[str, bytes]:
    return {p: store.get(p).data for p in store.list_prefix("quarantine/")}


def fallbacks() -> float:
    return metrics.sample("servo_manifest_fallbacks_total", {"repaired": "false"})


def test_a_reader_falls_back_to_the_newest_readable_generation_and_writes_nothing() -> None:
    store = MemoryObjectStore()
    manifests = published(store, 3)
    torn = tear(store, manifests.path(3))
    before = fallbacks()

    latest = ManifestStore(store, "t1", "w1").latest()

    assert latest is not None and latest.generation == 2
    assert latest.files_of("runs").base == "base-2.parquet"
    assert store.get(manifests.path(3)).data == torn  # a reader never writes
    assert quarantined(store) == {}
    assert fallbacks() == before + 1


def test_a_reader_walks_past_several_unreadable_generations() -> None:
    store = MemoryObjectStore()
    manifests = published(store, 4)
    tear(store, manifests.path(4))
    tear(store, manifests.path(3), 0)
    latest = ManifestStore(store, "t1", "w1").latest()
    assert latest is not None and latest.generation == 2
    tear(store, manifests.path(2))
    tear(store, manifests.path(1))
    assert ManifestStore(store, "t1", "w1").latest() is None  # generation 0: empty


def test_a_writer_sets_the_torn_generation_aside_and_publishes_the_next() -> None:
    store = MemoryObjectStore()
    manifests = published(store, 3)
    torn = tear(store, manifests.path(3))

    writer = ManifestStore(store, "t1", "w1", repair=True)
    latest = writer.latest()

    # Generation 3 now holds generation 2's content, stamped 3: the chain stays
    # contiguous and the next publish takes 4, never colliding with the torn 3.
    assert latest is not None and latest.generation == 3
    assert latest.files_of("runs").base == "base-2.parquet"
    assert latest.last_processed_at == 20
    assert ManifestStore(store, "t1", "w1").load(3) == latest
    [(moved_to, data)] = quarantined(store).items()
    assert data == torn
    assert moved_to.endswith(manifests.path(3)) and moved_to.startswith("quarantine/")
    writer.publish(manifest(4))
    assert ManifestStore(store, "t1", "w1").latest_generation() == 4


def test_a_writer_with_no_readable_generation_starts_from_an_empty_one() -> None:
    store = MemoryObjectStore()
    manifests = published(store, 2)
    tear(store, manifests.path(1))
    tear(store, manifests.path(2))
    latest = ManifestStore(store, "t1", "w1", repair=True).latest()
    assert latest is not None and latest.generation == 2
    assert dict(latest.tables) == {} and latest.last_processed_at == 0
    assert ManifestStore(store, "t1", "w1").load(1).tables == {}
    assert len(quarantined(store)) == 2


def test_the_compactor_goes_on_after_a_torn_newest_manifest() -> None:
    """Before: every compaction raised, or tried generation 3 forever."""
    store = MemoryObjectStore()
    compactor = Compactor(store, "t1", "w1")
    compact_events(compactor, lifecycle("r1", 2))
    compact_events(compactor, lifecycle("r2", 2))
    tear(store, compactor.manifests.path(2))

    again = Compactor(store, "t1", "w1")
    result = compact_events(again, lifecycle("r3", 2))

    assert result.generation == 3
    runs = {r.run_id for r in again.state.rows("runs")}
    assert {"r1", "r3"} <= runs  # r2 was only in the torn generation (a runner refolds its batch)


class RepairedMeanwhile(MemoryObjectStore):
    """Another process repairs the torn object between our read and our write."""

    def __init__(self) -> None:
        super().__init__()
        self.torn_path = ""
        self.replacement = b""

    def get(self, path: str) -> StoredObject:
        found = super().get(path)
        if path == self.torn_path and self.replacement:
            replacement, self.replacement = self.replacement, b""
            super().put_if_generation(path, replacement, found.generation)
        return found


def test_setting_aside_is_conditional_on_the_torn_bytes() -> None:
    store = RepairedMeanwhile()
    manifests = published(store, 3)
    tear(store, manifests.path(3))
    good = manifest(3, tables={"runs": TableFiles("by-the-other.parquet")})
    store.torn_path, store.replacement = manifests.path(3), good.to_json()

    latest = ManifestStore(store, "t1", "w1", repair=True).latest()

    # Our conditional replace lost to the other process: its manifest stands.
    assert latest == good
    assert ManifestStore(store, "t1", "w1").load(3) == good


def test_load_still_names_the_unreadable_object() -> None:
    store = MemoryObjectStore()
    manifests = published(store, 1)
    tear(store, manifests.path(1))
    with pytest.raises(CorruptObjectError, match=r"00000000000000000001\.json"):
        manifests.load(1)


def test_a_generation_holding_another_ones_content_is_repaired_too() -> None:
    store = MemoryObjectStore()
    manifests = published(store, 3)
    copied = store.get(manifests.path(2)).data  # a hand-made copy: readable, but wrong
    stored = store.get(manifests.path(3))
    store.put_if_generation(manifests.path(3), copied, stored.generation)
    latest = ManifestStore(store, "t1", "w1", repair=True).latest()
    assert latest is not None and latest.generation == 3
    assert latest.files_of("runs").base == "base-2.parquet"
    assert list(quarantined(store).values()) == [copied]


def test_a_newer_format_is_an_error_never_set_aside() -> None:
    """A newer Servo's manifest is readable to it: an older one must not repair it."""
    store = MemoryObjectStore()
    manifests = published(store, 2)
    newer = b'{"format": 99, "generation": 2, "tables": {}}'
    stored = store.get(manifests.path(2))
    store.put_if_generation(manifests.path(2), newer, stored.generation)
    for repair in (False, True):
        with pytest.raises(EngineError, match=r"newer Servo.*upgrade") as caught:
            ManifestStore(store, "t1", "w1", repair=repair).latest()
        assert not isinstance(caught.value, CorruptObjectError)
    assert store.get(manifests.path(2)).data == newer
    assert quarantined(store) == {}
