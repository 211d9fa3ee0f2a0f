"""The gc plan: which values go, which stay and why; the record; reading what went."""

from __future__ import annotations

import json

import pytest

from servo.engine import events as ev
from servo.engine.compactor import Compactor
from servo.engine.ids import cloud_task_id, dispatch_id, new_ulid
from servo.errors import ConfigError, ObjectNotFoundError, ValueRemovedError
from servo.maintenance.gc import KeptBecause, Retention, collect, plan_gc
from servo.sdk.io import output_path, read_value
from servo.storage.gc_records import removal_of
from servo.storage.memory import MemoryObjectStore
from tests.compaction import compact_events

T, W = "t1", "w1"
DAY_US = 86_400 * 1_000_000


def materialize(store: MemoryObjectStore, run_id: str, at: int, *, finish: bool = True) -> str:
    """Record a run of asset `a` (requested at `at`) and store its value; its location."""
    location = output_path("a", None, run_id, "json")
    store.put_if_absent(location, json.dumps([run_id]).encode())
    attempt_id = new_ulid()
    dispatch = dispatch_id(T, W, run_id, "a", 1)
    payloads: list[ev.Payload] = [
        ev.DispatchRequested(),
        ev.DispatchEnqueued(cloud_task_id=cloud_task_id(dispatch)),
        ev.TaskStarted(worker_id="w"),
    ]
    if finish:
        output = ev.OutputRef(location, "json", len(store.get(location).data), 1)
        payloads.append(ev.TaskFinished(outcome="succeeded", output=output, duration_s=0.1))
    events = [
        ev.Event.new(
            ev.RunRequested(tasks=(ev.PlannedTask("a", "a"),)),
            tenant_id=T,
            workspace_id=W,
            run_id=run_id,
            emitted_at=at,
        )
    ]
    for i, payload in enumerate(payloads, start=1):
        events.append(
            ev.Event.new(
                payload,
                tenant_id=T,
                workspace_id=W,
                run_id=run_id,
                task_key="a",
                attempt=1,
                attempt_id=attempt_id,
                emitted_at=at + i,
            )
        )
    compact_events(Compactor(store, T, W), events)
    return location


@pytest.fixture
def store() -> MemoryObjectStore:
    store = MemoryObjectStore()
    for i, run_id in enumerate(("r1", "r2", "r3")):
        materialize(store, run_id, (i + 1) * DAY_US)
    store.put_if_absent("outputs/a/__all__/r1-2.json", b"[2]")  # a retry's value
    store.put_if_absent("outputs/a/__all__/stranger.json", b"[0]")  # no known run
    return store


def test_a_retention_is_required_and_sane() -> None:
    with pytest.raises(ConfigError, match="--keep-runs"):
        Retention()
    with pytest.raises(ConfigError):
        Retention(keep_runs=-1)
    with pytest.raises(ConfigError):
        Retention(older_than_days=-0.5)


def test_outside_the_retention() -> None:
    by_count = Retention(keep_runs=2, as_of=10 * DAY_US)
    assert [by_count.outside(rank, 0) for rank in range(3)] == [False, False, True]
    by_age = Retention(older_than_days=2, as_of=10 * DAY_US)
    assert by_age.outside(0, 7 * DAY_US) and not by_age.outside(5, 9 * DAY_US)
    both = Retention(keep_runs=1, older_than_days=2, as_of=10 * DAY_US)
    assert both.outside(1, 9 * DAY_US) and both.outside(0, 1)


def test_plan_keeps_latest_retained_and_unknown(store: MemoryObjectStore) -> None:
    plan = plan_gc(store, Retention(keep_runs=1))
    assert sorted(v.path for v in plan.remove) == [
        "outputs/a/__all__/r1-2.json",
        "outputs/a/__all__/r1.json",
        "outputs/a/__all__/r2.json",
    ]
    assert {v.run_id for v in plan.remove} == {"r1", "r2"}
    assert plan.kept == {KeptBecause.RETAINED: 1, KeptBecause.UNKNOWN_RUN: 1}
    assert plan.bytes == sum(v.size for v in plan.remove) > 0
    everything = plan_gc(store, Retention(keep_runs=0))
    assert everything.kept == {KeptBecause.LATEST: 1, KeptBecause.UNKNOWN_RUN: 1}


def test_an_unfinished_run_is_never_collected(store: MemoryObjectStore) -> None:
    location = materialize(store, "r0", 1, finish=False)  # the oldest, still running
    plan = plan_gc(store, Retention(keep_runs=0))
    assert location not in {v.path for v in plan.remove}
    assert plan.kept[KeptBecause.UNFINISHED] == 1


def test_collect_records_first_and_reading_says_gc(store: MemoryObjectStore) -> None:
    plan = plan_gc(store, Retention(keep_runs=1))
    record = collect(store, plan, clock=lambda: 5 * DAY_US)
    assert record is not None and record.startswith("gc/")
    document = json.loads(store.get(record).data)
    assert [r["path"] for r in document["removed"]] == [v.path for v in plan.remove]
    assert document["created_at"] == 5 * DAY_US
    removal = removal_of(store, "outputs/a/__all__/r2.json")
    assert removal is not None and removal.run_id == "r2" and removal.record == record
    with pytest.raises(ValueRemovedError, match=r"removed by 'servo gc' on 1970-01-06"):
        read_value(store, "outputs/a/__all__/r2.json", "json")
    with pytest.raises(ObjectNotFoundError) as never:
        read_value(store, "outputs/a/__all__/never.json", "json")
    assert not isinstance(never.value, ValueRemovedError)
    assert read_value(store, "outputs/a/__all__/r3.json", "json") == ["r3"]
    assert collect(store, plan_gc(store, Retention(keep_runs=1))) is None  # nothing left
