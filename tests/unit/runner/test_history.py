"""Ended runs leave the hot state for history tables, and nothing recorded is lost
(ADR 0022): readers see every run, later plans still find the newest values, late
events cannot change an archived run, and the hot state is the size of the active
work however long the history."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servo.engine import schema as s
from servo.engine.cancellation import cancel_path, request_cancel
from servo.engine.history import tier_of
from servo.engine.ids import now_us
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.engine.replay import compare, replay_ledger
from servo.engine.snapshot import SnapshotReader
from servo.runner import EmbeddedRunner
from servo.sdk.io import read_value
from servo.storage.memory import MemoryObjectStore

from .chain import DEFS


def run_once(store: MemoryObjectStore, selection: str | None = None) -> str:
    """One run in a fresh runner, the way each `servo materialize` is a new process."""
    with EmbeddedRunner(store, DEFS) as runner:
        run_id = runner.start_run(selection).run_id
        assert runner.wait(run_id).status == s.RUN_SUCCEEDED
    return run_id


def hot_run_ids(store: MemoryObjectStore) -> set[str]:
    snapshot = SnapshotReader(store, "default", "default").load()
    return {r.run_id for r in snapshot.hot_rows("runs")}


def test_a_new_runner_archives_the_runs_that_ended_and_readers_still_see_them() -> None:
    store = MemoryObjectStore()
    runs = [run_once(store) for _ in range(4)]
    # Each runner keeps its run hot while it is open and archives it when it closes.
    assert hot_run_ids(store) == set()
    snapshot = SnapshotReader(store, "default", "default").load()
    assert {r.run_id for r in snapshot.runs()} == set(runs)
    for run_id in runs:
        found = snapshot.run(run_id)
        assert found is not None and found.status == s.RUN_SUCCEEDED
        assert {t.task_key for t in snapshot.tasks_of(run_id)} == {"a", "b", "c"}
    # The hot tables and their history twins together are exactly the ledger's fold.
    replay = replay_ledger(store, "default", "default")
    assert [d for d in compare(snapshot, replay.state) if d.differs] == []


def test_the_hot_state_holds_only_active_work_however_long_the_history() -> None:
    store = MemoryObjectStore()
    sizes = []
    for _ in range(6):
        run_once(store)
        with EmbeddedRunner(store, DEFS) as runner:
            state = runner.state
            runner.publish()  # archives what ended
            sizes.append({name: len(state.tables[name]) for name in ("runs", "tasks", "attempts")})
    assert all(size == {"runs": 0, "tasks": 0, "attempts": 0} for size in sizes)


def test_a_plan_pins_the_newest_value_of_an_archived_run() -> None:
    store = MemoryObjectStore()
    first = run_once(store)
    second = run_once(store)
    run_once(store, "c")  # archives `second`; reads b from it
    with EmbeddedRunner(store, DEFS) as runner:
        assert runner.state.run(second) is None  # archived by now
        latest = runner.state.latest[("b", "")]
        assert latest.run_id == second and latest.run_id != first
        start = runner.start_run("c")
        assert runner.wait(start.run_id).status == s.RUN_SUCCEEDED
        (task,) = runner.state.tasks_of(start.run_id)
        assert task.output_location and task.output_format
        assert read_value(store, task.output_location, task.output_format) == 3
        pinned = {name: location for name, location, _ in json.loads(task.pinned_inputs or "[]")}
        assert pinned == {"b": latest.output_location}


def test_a_late_event_brings_an_archived_run_back_and_it_is_archived_again() -> None:
    """A cancel written after the run ended (another process, a skewed clock): the
    run's rows come back from the history, the cancel folds as it would have, and the
    next publish archives the run again with it; published == ledger replay."""
    store = MemoryObjectStore()
    run_id = run_once(store)
    run_once(store)  # archives run_id
    with EmbeddedRunner(store, DEFS) as runner:
        state = runner.state
        assert state.run(run_id) is None and run_id in state.archived
        ledger = LedgerWriter(store, "default", "default")
        assert request_cancel(ledger, run_id, "late", now_us())
        late = LedgerReader(store).read(ledger.path_for(cancel_path(run_id)))
        stats = runner.compactor.fold(late)
        assert stats.archived_ignored == 0
        back = state.run(run_id)
        assert back is not None and back.cancel_requested_at is not None
        assert back.status == s.RUN_SUCCEEDED  # a cancel cannot undo what ended
        runner.publish()
        assert state.run(run_id) is None  # archived again
        # Recovery knows the cancel is folded: it reads nothing again.
        assert runner.compactor.unfolded_paths() == []
    snapshot = SnapshotReader(store, "default", "default").load()
    found = snapshot.run(run_id)
    assert found is not None and found.cancel_requested_at is not None
    replay = replay_ledger(store, "default", "default")
    assert [d for d in compare(snapshot, replay.state) if d.differs] == []


def test_waiting_on_an_archived_run_brings_it_back_readable() -> None:
    store = MemoryObjectStore()
    run_id = run_once(store)
    run_once(store)
    with EmbeddedRunner(store, DEFS) as runner:
        assert runner.run_record(run_id) is not None
        assert runner.wait(run_id).status == s.RUN_SUCCEEDED
        assert {t.task_key for t in runner.state.tasks_of(run_id)} == {"a", "b", "c"}
        runner.publish()
        assert run_id in hot_run_ids(store)  # retained by `wait` while the runner is open
    assert run_id not in hot_run_ids(store)  # and archived again when it closes
    snapshot = SnapshotReader(store, "default", "default").load()
    replay = replay_ledger(store, "default", "default")
    assert [d for d in compare(snapshot, replay.state) if d.differs] == []


def test_history_files_merge_in_tiers_so_a_manifest_names_few_of_them() -> None:
    store = MemoryObjectStore()
    fanout = 4
    for _ in range(2 * fanout * fanout + 2):
        with EmbeddedRunner(store, DEFS) as runner:
            runner.compactor.max_l0_files = fanout
            run_id = runner.start_run().run_id
            runner.wait(run_id)
    snapshot = SnapshotReader(store, "default", "default").load()
    files = snapshot.files_of("history_tasks")
    tiers = [tier_of(p) for p in files.deltas]
    assert tiers == sorted(tiers, reverse=True)  # older files in higher tiers
    assert all(tiers.count(t) < fanout for t in set(tiers))
    assert max(tiers) == 2
    assert len(snapshot.runs()) == 2 * fanout * fanout + 2
    assert len(snapshot.table("tasks")) == 3 * len(snapshot.runs())


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["*", "c", "b+", "a"]), min_size=1, max_size=5))
def test_archiving_never_changes_what_the_ledger_says(selections: list[str]) -> None:
    """Whatever runs, whatever archived when, the hot tables and the history twins
    together equal a fold of the whole ledger."""
    store = MemoryObjectStore()
    run_once(store)
    for selection in selections:
        run_once(store, selection)
    with EmbeddedRunner(store, DEFS) as runner:
        runner.publish()
    snapshot = SnapshotReader(store, "default", "default").load()
    replay = replay_ledger(store, "default", "default")
    assert [d for d in compare(snapshot, replay.state) if d.differs] == []
    assert hot_run_ids(store) == set()


def test_a_running_run_is_never_archived() -> None:
    store = MemoryObjectStore()
    with EmbeddedRunner(store, DEFS) as runner:
        run_id = runner.start_run().run_id  # requested, never driven here
    with EmbeddedRunner(store, DEFS) as other:
        other.publish()
        assert other.state.run(run_id) is not None
    assert run_id in hot_run_ids(store)


@pytest.mark.parametrize("runs", [1, 5])
def test_a_runner_keeps_every_run_it_drove_readable_from_its_state(runs: int) -> None:
    store = MemoryObjectStore()
    with EmbeddedRunner(store, DEFS) as runner:
        ids = []
        for _ in range(runs):
            ids.append(runner.start_run().run_id)
            runner.wait(ids[-1])
            runner.publish()
        assert all(runner.state.run(r) is not None for r in ids)


def test_a_closing_runner_archives_its_runs_and_still_answers_for_them() -> None:
    """The next runner of the home loads only active work (its first step does not
    archive the last run); this runner's `state` still shows its runs after the close."""
    store = MemoryObjectStore()
    with EmbeddedRunner(store, DEFS) as runner:
        run_id = runner.start_run().run_id
        assert runner.wait(run_id).status == s.RUN_SUCCEEDED
    assert hot_run_ids(store) == set()
    assert {t.task_key: t.status for t in runner.state.tasks_of(run_id)} == dict.fromkeys(
        "abc", s.SUCCEEDED
    )
    with EmbeddedRunner(store, DEFS) as later:
        assert later.state.tables["tasks"] == {}  # nothing to load or archive
        record = later.run_record(run_id)
        assert record is not None and record[0].status == s.RUN_SUCCEEDED
