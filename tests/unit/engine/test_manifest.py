"""Manifest publish (CAS, fencing) and discovery by hint plus probing, no listing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from servo.engine.manifest import Manifest, ManifestStore, TableFiles
from servo.errors import EngineError, ManifestConflictError
from servo.storage.memory import MemoryObjectStore


class CountingStore(MemoryObjectStore):
    """Counts heads; listing is forbidden."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = 0

    def head(self, path: str) -> int | None:
        self.heads += 1
        return super().head(path)

    def list_prefix(self, prefix: str) -> Iterator[str]:
        raise AssertionError("correctness code must not list")


def manifest(generation: int, **kw: object) -> Manifest:
    return Manifest(generation=generation, tenant_id="t1", workspace_id="w1", **kw)  # type: ignore[arg-type]


def publish_up_to(manifests: ManifestStore, last: int) -> None:
    for generation in range(1, last + 1):
        manifests.publish(manifest(generation, events_folded=generation))


def test_empty_store_has_no_manifest() -> None:
    manifests = ManifestStore(CountingStore(), "t1", "w1")
    assert manifests.latest() is None
    assert manifests.latest_generation() == 0


def test_json_round_trip() -> None:
    original = manifest(
        7,
        tables={
            "tasks": TableFiles("b.parquet", ("d1.parquet", "d2.parquet")),
            "runs": TableFiles(),
        },
        last_processed_at=123,
        events_folded=9,
        published_at=456,
        writer_id="w",
    )
    again = Manifest.from_json(original.to_json())
    assert again == original
    assert again.files_of("tasks").files == ("b.parquet", "d1.parquet", "d2.parquet")
    assert again.files_of("timers").files == ()


def test_publish_is_create_only() -> None:
    store = CountingStore()
    manifests = ManifestStore(store, "t1", "w1")
    manifests.publish(manifest(1, writer_id="a"))
    with pytest.raises(ManifestConflictError, match="generation 1"):
        ManifestStore(store, "t1", "w1").publish(manifest(1, writer_id="b"))
    assert manifests.load(1).writer_id == "a"
    with pytest.raises(EngineError):
        manifests.publish(manifest(0))


def test_latest_with_a_fresh_hint_costs_two_heads() -> None:
    store = CountingStore()
    manifests = ManifestStore(store, "t1", "w1")
    publish_up_to(manifests, 40)
    store.heads = 0
    latest = ManifestStore(store, "t1", "w1").latest()
    assert latest is not None and latest.generation == 40
    assert store.heads <= 2


@pytest.mark.parametrize("hint", [None, 0, 3, 37])
def test_latest_probes_forward_from_a_stale_or_missing_hint(hint: int | None) -> None:
    store = CountingStore()
    manifests = ManifestStore(store, "t1", "w1")
    publish_up_to(manifests, 100)
    store.delete(manifests.hint_path)
    if hint is not None:
        store.put_if_absent(manifests.hint_path, json.dumps({"generation": hint}).encode())
    store.heads = 0

    assert ManifestStore(store, "t1", "w1").latest_generation() == 100
    # Exponential steps then binary search: about 2 * log2(lag) heads.
    assert store.heads <= 2 * 7 + 2


def test_a_damaged_hint_only_costs_probing() -> None:
    store = CountingStore()
    manifests = ManifestStore(store, "t1", "w1")
    publish_up_to(manifests, 5)
    store.delete(manifests.hint_path)
    store.put_if_absent(manifests.hint_path, b"garbage")
    assert ManifestStore(store, "t1", "w1").latest_generation() == 5
    store.delete(manifests.hint_path)
    store.put_if_absent(manifests.hint_path, b'{"generation": 99}')  # names nothing
    assert ManifestStore(store, "t1", "w1").latest_generation() == 5


def test_hint_never_moves_backwards() -> None:
    store = MemoryObjectStore()
    a = ManifestStore(store, "t1", "w1")
    b = ManifestStore(store, "t1", "w1")
    a.publish(manifest(1))
    b.latest()
    a.publish(manifest(2))
    a.publish(manifest(3))
    # b's view of the hint object is stale: its conditional write fails, it re-reads,
    # sees 3 > 2 and leaves the hint alone.
    b._write_hint(2)
    assert json.loads(store.get(a.hint_path).data) == {"generation": 3}
    b.publish(manifest(4))
    assert json.loads(store.get(a.hint_path).data) == {"generation": 4}


def test_a_failing_hint_write_does_not_fail_the_publish() -> None:
    class NoHint(MemoryObjectStore):
        def put_if_absent(self, path: str, data: bytes) -> int:
            if path.endswith("LATEST"):
                from servo.errors import TransientStorageError

                raise TransientStorageError("throttled")
            return super().put_if_absent(path, data)

    store = NoHint()
    manifests = ManifestStore(store, "t1", "w1")
    manifests.publish(manifest(1))
    manifests.publish(manifest(2))
    assert manifests.latest_generation() == 2


def test_manifests_are_scoped() -> None:
    store = MemoryObjectStore()
    ManifestStore(store, "t1", "w1").publish(manifest(1))
    assert ManifestStore(store, "t1", "w2").latest() is None
    assert ManifestStore(store, "t2", "w1").latest() is None
    with pytest.raises(EngineError, match="another tenant"):
        ManifestStore(store, "t1", "w2").publish(manifest(1))
    with pytest.raises(EngineError, match="invalid tenant_id"):
        ManifestStore(store, "../x", "w1")


def test_a_corrupt_manifest_is_an_error_naming_its_path() -> None:
    store = MemoryObjectStore()
    manifests = ManifestStore(store, "t1", "w1")
    store.put_if_absent(manifests.path(1), b'{"format": 1}')
    with pytest.raises(EngineError, match=r"manifest/00000000000000000001\.json"):
        manifests.load(1)
    store.put_if_absent(manifests.path(2), b'{"format": 99}')
    with pytest.raises(EngineError, match="format 99"):
        manifests.load(2)


def test_latest_recovers_from_a_hint_naming_nothing() -> None:
    store = MemoryObjectStore()
    manifests = ManifestStore(store, "t1", "w1")
    publish_up_to(manifests, 5)
    store.delete(manifests.hint_path)
    store.put_if_absent(manifests.hint_path, b'{"generation": 99}')
    latest = ManifestStore(store, "t1", "w1").latest()
    assert latest is not None and latest.generation == 5
