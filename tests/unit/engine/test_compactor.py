"""The compactor: CAS races, crash recovery, rebuild == incremental, batching."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servo.engine import events as ev
from servo.engine.compactor import Compactor
from servo.engine.ledger import CompactionInbox, LedgerWriter
from servo.engine.manifest import Manifest, ManifestStore
from servo.engine.projections import canonical_bytes
from servo.engine.schema import TABLES
from servo.engine.snapshot import SnapshotReader
from servo.errors import EngineError, ManifestConflictError, ObjectNotFoundError
from servo.observability import metrics
from servo.storage.base import ObjectStore
from servo.storage.local import LocalObjectStore
from servo.storage.memory import MemoryObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE, lifecycle
from tests.compaction import compact_events, compact_paths

from .strategies import histories, shuffled_with_duplicates


class Crash(Exception):
    """Stands for the process dying."""


def tables_bytes(store: ObjectStore) -> dict[str, bytes]:
    """Canonical Parquet bytes of every table of the latest published snapshot."""
    snapshot = SnapshotReader(store, TENANT, WORKSPACE).load()
    return {spec.name: canonical_bytes(spec, snapshot.table(spec.name)) for spec in TABLES}


def one_batch(events: Sequence[ev.Event]) -> dict[str, bytes]:
    store = MemoryObjectStore()
    compact_events(Compactor(store, TENANT, WORKSPACE), events)
    return tables_bytes(store)


def in_batches(events: Sequence[ev.Event], cuts: Sequence[int], **kw: int) -> dict[str, bytes]:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE, **kw)
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(events)}), len(events)]
    for start, end in itertools.pairwise(bounds):
        compact_events(compactor, events[start:end])
    return tables_bytes(store)


def test_cas_conflict_detected_and_retried(tmp_path: Path) -> None:
    """Two compactors race on one manifest: both finish, nothing lost, no gap or double."""
    store = LocalObjectStore(tmp_path, fsync=False)
    rounds = 12
    streams = {
        name: [lifecycle(f"{name}{i}", 2, start=1_000_000 + i) for i in range(rounds)]
        for name in ("A", "B")
    }
    barrier = threading.Barrier(2)
    results: dict[str, list[int]] = {"A": [], "B": []}
    conflicts: dict[str, int] = {"A": 0, "B": 0}
    errors: list[BaseException] = []
    before = metrics.sample("servo_compaction_cas_conflicts_total")

    def run(name: str) -> None:
        compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=4, backoff_s=0.0005)
        try:
            for batch in streams[name]:
                barrier.wait(timeout=30)
                result = compact_events(compactor, batch)
                results[name].append(result.generation)
                conflicts[name] += result.conflicts
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors

    # Every generation 1..N published exactly once, by exactly one compaction call.
    published = sorted(results["A"] + results["B"])
    assert published == list(range(1, 2 * rounds + 1))
    manifests = ManifestStore(store, TENANT, WORKSPACE)
    assert all(store.head(manifests.path(g)) is not None for g in published)
    assert store.head(manifests.path(2 * rounds + 1)) is None
    assert manifests.latest_generation() == 2 * rounds
    # The losers noticed and retried: in round one the second publisher always loses.
    assert conflicts["A"] + conflicts["B"] >= 1
    assert metrics.sample("servo_compaction_cas_conflicts_total") - before == (
        conflicts["A"] + conflicts["B"]
    )
    # No event lost: the final tables equal one compaction of every event.
    everything = [e for stream in streams.values() for batch in stream for e in batch]
    assert tables_bytes(store) == one_batch(everything)
    snapshot = SnapshotReader(store, TENANT, WORKSPACE).load()
    assert len(snapshot.runs()) == 2 * rounds
    assert {r.status for r in snapshot.runs()} == {"SUCCEEDED"}


def test_a_paused_compactor_is_fenced_and_catches_up() -> None:
    store = MemoryObjectStore()
    slow = Compactor(store, TENANT, WORKSPACE)
    compact_events(slow, lifecycle("r1"))
    fast = Compactor(store, TENANT, WORKSPACE)
    compact_events(fast, lifecycle("r2"))  # generation 2, behind slow's back

    result = compact_events(slow, lifecycle("r3"))

    assert result.conflicts == 1 and result.generation == 3
    runs = {r.run_id for r in SnapshotReader(store, TENANT, WORKSPACE).load().runs()}
    assert runs == {"r1", "r2", "r3"}


def test_conflict_retries_are_bounded() -> None:
    class AlwaysLoses(Compactor):
        def _publish(self, manifest: Manifest) -> None:
            raise ManifestConflictError("lost")

    store = MemoryObjectStore()
    compactor = AlwaysLoses(store, TENANT, WORKSPACE, max_conflict_retries=3, sleep=lambda _: None)
    before = metrics.sample(
        "servo_compaction_errors_total", {"error_type": "ManifestConflictError"}
    )
    with pytest.raises(ManifestConflictError):
        compact_events(compactor, lifecycle("r1"))
    after = metrics.sample("servo_compaction_errors_total", {"error_type": "ManifestConflictError"})
    assert after - before == 1


@pytest.mark.parametrize("restart", [False, True])
def test_crash_between_files_and_publish_recovers(
    monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    batches = [lifecycle(f"r{i}", 3, chain=True) for i in range(3)]
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=2)
    compact_events(compactor, batches[0])

    def die(manifest: Manifest) -> None:
        raise Crash

    monkeypatch.setattr(compactor, "_publish", die)
    with pytest.raises(Crash):
        compact_events(compactor, batches[1])
    monkeypatch.undo()
    manifests = ManifestStore(store, TENANT, WORKSPACE)
    assert manifests.latest_generation() == 1  # nothing published: the files are orphans
    orphans = set(store.list_prefix("projections/t1/w1/tables/"))

    survivor = Compactor(store, TENANT, WORKSPACE, max_l0_files=2) if restart else compactor
    compact_events(survivor, batches[1])  # redelivered: the notification was never acked
    compact_events(survivor, batches[2])

    assert tables_bytes(store) == in_batches([e for b in batches for e in b], [len(batches[0])])
    latest = manifests.latest()
    assert latest is not None and latest.generation == 3
    referenced = {p for files in latest.tables.values() for p in files.files}
    first_files = {p for files in manifests.load(1).tables.values() for p in files.files}
    assert not (orphans - first_files) & referenced  # orphans are never referenced


def test_rebuild_equals_incremental() -> None:
    store = MemoryObjectStore()
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    paths = [writer.append(lifecycle(f"r{i}", 4, chain=i % 2 == 0)) for i in range(6)]
    compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=3)
    for path in paths:
        compact_paths(compactor, store, [path])
    incremental = tables_bytes(store)

    result = compactor.rebuild(paths)

    assert result.generation == len(paths) + 1
    assert all(not files.deltas for files in result.manifest.tables.values())
    assert tables_bytes(store) == incremental
    fresh = MemoryObjectStore()
    for path in paths:
        fresh.put_if_absent(path, store.get(path).data)
    Compactor(fresh, TENANT, WORKSPACE).rebuild(paths)
    assert tables_bytes(fresh) == incremental
    # The compactor goes on from the rebuilt state.
    compact_events(compactor, lifecycle("r9", 2))
    assert len(SnapshotReader(store, TENANT, WORKSPACE).load().runs()) == 7


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(), cuts=st.lists(st.integers(0, 60), max_size=8))
def test_batching_does_not_change_published_tables(events: list[ev.Event], cuts: list[int]) -> None:
    assert in_batches(events, cuts, max_l0_files=2) == one_batch(events)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=shuffled_with_duplicates())
def test_duplicates_and_permutations_in_batches_give_identical_files(
    case: tuple[list[ev.Event], list[ev.Event], list[int]],
) -> None:
    events, permuted, cuts = case
    assert in_batches(permuted, cuts, max_l0_files=3) == one_batch(events)


def test_l0_deltas_are_merged_into_a_base() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=3)
    everything: list[ev.Event] = []
    for i in range(7):
        batch = lifecycle(f"r{i}", 2)
        everything += batch
        result = compact_events(compactor, batch)
        runs = result.manifest.files_of("runs")
        assert len(runs.deltas) == (i + 1) % 3
        assert (runs.base is not None) == (i >= 2)
    assert metrics.sample("servo_projection_l0_files", {"table": "runs"}) == 1
    assert tables_bytes(store) == one_batch(everything)


def test_watermark_is_monotonic_and_counts_are_kept() -> None:
    store = MemoryObjectStore()
    now = [5_000_000]
    compactor = Compactor(store, TENANT, WORKSPACE, clock=lambda: now[0])
    first = compact_events(compactor, lifecycle("r1", start=1_000_000), taken_at=1_000_100)
    assert first.manifest.last_processed_at == 1_000_100
    older = compact_events(compactor, lifecycle("r2", start=900_000), taken_at=900_050)
    assert older.manifest.last_processed_at == 1_000_100  # an older batch: kept
    later = compact_events(compactor, lifecycle("r3", start=2_000_000), taken_at=3_000_000)
    newest = max(e.emitted_at for e in lifecycle("r3", start=2_000_000))
    assert later.manifest.last_processed_at == newest  # never past the newest event
    assert compact_events(compactor, [], taken_at=4_000_000).manifest.last_processed_at == newest
    assert later.manifest.events_folded == first.events + older.events + later.events


def test_a_watermark_set_by_a_clock_that_ran_ahead_comes_back() -> None:
    store = MemoryObjectStore()
    hour = 3_600_000_000
    ahead = Compactor(store, TENANT, WORKSPACE, clock=lambda: 10 * hour)
    events = lifecycle("r1", start=10 * hour - 1_000)
    assert compact_events(ahead, events).manifest.last_processed_at > 9 * hour
    right = Compactor(store, TENANT, WORKSPACE, clock=lambda: hour)
    published = compact_events(right, lifecycle("r2", start=hour - 5_000)).manifest
    assert published.last_processed_at <= hour


def test_nothing_new_publishes_nothing() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    batch = lifecycle("r1")
    compact_events(compactor, batch, taken_at=10)
    again = compact_events(compactor, batch, taken_at=10)  # a pure redelivery
    assert not again.published and again.generation == 1
    assert not again.files_written


def test_inbox_paths_folded_then_published_are_acknowledged() -> None:
    store = MemoryObjectStore()
    inbox = CompactionInbox()
    writer = LedgerWriter(store, TENANT, WORKSPACE, notify=inbox.put)
    for i in range(3):
        writer.append(lifecycle(f"r{i}"))
    compactor = Compactor(store, TENANT, WORKSPACE)

    result = compact_paths(compactor, store, inbox.drain(100), taken_at=42)

    assert result.events == 3 * 13 and result.manifest.last_processed_at == 42
    assert result.manifest.ledger_through == 3
    assert len(compactor.snapshot().runs()) == 3


def test_errors_are_counted_and_leave_the_projections_untouched() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    compact_events(compactor, lifecycle("r1"))
    before = metrics.sample("servo_compaction_errors_total", {"error_type": "ObjectNotFoundError"})
    with pytest.raises(ObjectNotFoundError):
        compactor.rebuild(["ledger/t1/w1/batches/missing.json"])
    after = metrics.sample("servo_compaction_errors_total", {"error_type": "ObjectNotFoundError"})
    assert after - before == 1
    with pytest.raises(EngineError, match="belongs to"):
        compact_events(compactor, lifecycle("r2", tenant="other"))
    assert ManifestStore(store, TENANT, WORKSPACE).latest_generation() == 1
    compact_events(compactor, lifecycle("r3"))
    assert {r.run_id for r in compactor.snapshot().runs()} == {"r1", "r3"}


def test_fold_then_publish_once() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    batches = [lifecycle(f"r{i}", 3, chain=True) for i in range(4)]
    for batch in batches:
        compactor.fold(batch)
    assert compactor.state.run("r3") is not None  # ahead of the projections
    assert compactor.snapshot().generation == 0

    result = compactor.publish(taken_at=7)

    assert result.generation == 1 and result.events == compactor.manifest.events_folded  # type: ignore[union-attr]
    assert result.events == sum(len(b) for b in batches)  # every folded event was pending
    assert not compactor.publish(taken_at=7).published  # nothing was left pending
    assert tables_bytes(store) == one_batch([e for b in batches for e in b])


def test_pending_events_survive_a_lost_race_and_a_failed_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    mine = [lifecycle("m1"), lifecycle("m2")]
    for batch in mine:
        compactor.fold(batch)
    rival = lifecycle("x1")
    compact_events(Compactor(store, TENANT, WORKSPACE), rival)

    def die(manifest: Manifest) -> None:
        raise Crash

    monkeypatch.setattr(compactor, "_publish", die)
    with pytest.raises(Crash):
        compactor.publish()
    monkeypatch.undo()
    result = compactor.publish()  # reloads the rival's generation, re-folds, publishes

    assert result.generation == 2
    assert tables_bytes(store) == one_batch([*mine[0], *mine[1], *rival])


def test_a_rejected_batch_leaves_earlier_folds_pending() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    good = lifecycle("r1")
    compactor.fold(good)
    with pytest.raises(EngineError):
        compactor.fold([*lifecycle("r2"), *lifecycle("r3", tenant="other")])
    compactor.publish()
    assert tables_bytes(store) == one_batch(good)
