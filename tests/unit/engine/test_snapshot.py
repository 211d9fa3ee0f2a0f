"""Snapshots: lazy per-table loading, caches, and the controllers' query helpers."""

from __future__ import annotations

import pytest

from servo.engine import events as ev
from servo.engine import projections, snapshot
from servo.engine.compactor import Compactor
from servo.engine.ids import new_ulid
from servo.engine.projections import canonical_bytes
from servo.engine.schema import TABLES
from servo.engine.snapshot import Snapshot, SnapshotReader
from servo.errors import EngineError
from servo.storage.base import StoredObject
from servo.storage.memory import MemoryObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE, lifecycle
from tests.compaction import compact_events


class CountingStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.parquet_gets = 0

    def get(self, path: str) -> StoredObject:
        if path.endswith(".parquet"):
            self.parquet_gets += 1
        return super().get(path)


def event(payload: ev.Payload, run_id: str, at: int, task: str | None = None,
          attempt: int | None = None, attempt_id: str | None = None) -> ev.Event:  # fmt: skip
    return ev.Event(new_ulid(), TENANT, WORKSPACE, run_id, payload, task, attempt, attempt_id, at)


def a_busy_workspace() -> list[ev.Event]:
    """r1 done; r2: t0 dispatched (pending outbox), t1 ready, t2 waits on t1; a timer."""
    done = lifecycle("r1", 2)
    plan = (
        ev.PlannedTask("t0", "t0"),
        ev.PlannedTask("t1", "t1"),
        ev.PlannedTask("t2", "t2", deps=(("t1", "data"),)),
    )
    busy = [
        event(ev.RunRequested(tasks=plan), "r2", 10),
        event(ev.DispatchRequested(), "r2", 20, "t0", 1, "A0"),
        event(ev.TimerRequested(timer_id="tm-due", kind="heartbeat_check", due_at=100),
              "r2", 30, "t0", 1, "A0"),
        event(ev.TimerRequested(timer_id="tm-later", kind="task_timeout", due_at=900),
              "r2", 31, "t0", 1, "A0"),
    ]  # fmt: skip
    return done + busy


def test_query_helpers() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    compact_events(compactor, a_busy_workspace())
    snap = SnapshotReader(store, TENANT, WORKSPACE).load()

    assert snap.generation == 1
    assert [r.run_id for r in snap.runs()] == ["r1", "r2"]
    r1 = snap.run("r1")
    assert r1 is not None and r1.status == "SUCCEEDED"
    assert snap.run("nope") is None
    assert [(t.task_key, t.status) for t in snap.tasks_of("r2")] == [
        ("t0", "DISPATCHED"),
        ("t1", "READY"),
        ("t2", "PENDING"),
    ]
    assert [(t.run_id, t.task_key) for t in snap.ready_tasks()] == [("r2", "t1")]
    outbox = snap.pending_outbox()
    assert [(o.run_id, o.task_key, o.attempt_id) for o in outbox] == [("r2", "t0", "A0")]
    assert [t.timer_id for t in snap.due_timers(100)] == ["tm-due"]
    assert [t.timer_id for t in snap.due_timers(99)] == []
    assert {t.timer_id for t in snap.due_timers(10_000)} == {"tm-due", "tm-later"}


def test_generation_zero_is_empty() -> None:
    snap = SnapshotReader(MemoryObjectStore(), TENANT, WORKSPACE).load()
    assert snap.generation == 0 and snap.last_processed_at == 0
    for spec in TABLES:
        assert snap.table(spec.name).num_rows == 0
        assert snap.table(spec.name).schema.equals(spec.schema)
    assert snap.ready_tasks() == [] and snap.runs() == [] and snap.due_timers(1) == []


def test_the_compactors_snapshot_reads_no_file() -> None:
    store = CountingStore()
    compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=3)
    for i in range(5):
        compact_events(compactor, lifecycle(f"r{i}"))
        snap = compactor.snapshot()
        assert snap.generation == i + 1
        assert len(snap.runs()) == i + 1
        for spec in TABLES:
            snap.table(spec.name)
    assert store.parquet_gets == 0


def test_unchanged_tables_are_shared_between_snapshots() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    compact_events(compactor, a_busy_workspace())
    first = compactor.snapshot()
    timers = first.table("timers")
    compact_events(compactor, [event(ev.TaskStarted(worker_id="w"), "r2", 40, "t0", 1, "A0")])
    second = compactor.snapshot()
    assert second.files_of("timers") == first.files_of("timers")
    assert second.table("timers") is timers  # a dict lookup, no merge
    assert second.table("tasks") is not first.table("tasks")


def test_incremental_merges_equal_cold_loads() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=4)
    warm: list[dict[str, bytes]] = []
    manifests = []
    for i in range(6):
        compact_events(compactor, lifecycle(f"r{i}", 2, chain=True))
        snap = compactor.snapshot()
        manifests.append(snap.manifest)
        warm.append({s.name: canonical_bytes(s, snap.table(s.name)) for s in TABLES})
    projections.clear_cache()
    snapshot.clear_merge_cache()
    for manifest, expected in zip(reversed(manifests), reversed(warm), strict=True):
        cold = Snapshot(store, manifest)
        assert {s.name: canonical_bytes(s, cold.table(s.name)) for s in TABLES} == expected


def test_snapshot_carries_the_watermark() -> None:
    store = MemoryObjectStore()
    compact_events(Compactor(store, TENANT, WORKSPACE), lifecycle("r1"), taken_at=1234)
    assert SnapshotReader(store, TENANT, WORKSPACE).load().last_processed_at == 1234


def test_a_reader_refuses_a_manifest_of_another_workspace() -> None:
    store = MemoryObjectStore()
    compactor = Compactor(store, TENANT, WORKSPACE)
    compact_events(compactor, lifecycle("r1"))
    with pytest.raises(EngineError, match="given to the reader"):
        SnapshotReader(store, TENANT, "other").load(compactor.manifest)
