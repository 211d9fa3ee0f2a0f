"""Replaying the ledger and comparing it with the published projections."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings

from servo.engine import events as ev
from servo.engine.compactor import Compactor
from servo.engine.ledger import LedgerWriter
from servo.engine.replay import compare, replay_and_compare, replay_ledger, run_ids_in
from servo.engine.snapshot import SnapshotReader
from servo.errors import CorruptObjectError
from servo.storage.memory import MemoryObjectStore
from tests.compaction import compact_paths

from .strategies import TENANT, WORKSPACE, histories, shuffled_with_duplicates


def write_and_compact(
    store: MemoryObjectStore, events: Sequence[ev.Event], cuts: Sequence[int]
) -> list[str]:
    """Write `events` to the ledger in batches and compact each batch; return the paths."""
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    compactor = Compactor(store, TENANT, WORKSPACE, max_l0_files=3)
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(events)}), len(events)]
    paths = []
    for start, end in itertools.pairwise(bounds):
        path = writer.append(events[start:end])
        compact_paths(compactor, store, [path])
        paths.append(path)
    return paths


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled_with_duplicates())
def test_projections_equal_the_replay_whatever_the_batches(
    case: tuple[list[ev.Event], list[ev.Event], list[int]],
) -> None:
    """Incremental compaction in any batches, duplicates included, equals a full replay."""
    _, permuted, cuts = case
    store = MemoryObjectStore()
    paths = write_and_compact(store, permuted, cuts)
    comparison = replay_and_compare(store, TENANT, WORKSPACE)
    assert comparison.equal, comparison.diffs
    assert comparison.replay.paths == tuple(sorted(paths))
    assert comparison.replay.events == len(permuted)
    assert comparison.generation >= 1


@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_an_object_never_compacted_shows_as_a_difference(events: list[ev.Event]) -> None:
    """Projections behind the ledger differ from the replay, naming the run."""
    store = MemoryObjectStore()
    write_and_compact(store, events[:1], [])  # the run request only
    LedgerWriter(store, TENANT, WORKSPACE).append(events[1:] or events)  # not compacted
    comparison = replay_and_compare(store, TENANT, WORKSPACE)
    if len(events) == 1:
        assert comparison.equal  # the duplicate request changes nothing
        return
    assert not comparison.equal
    run_id = events[0].run_id
    assert any(run_id in diff.run_ids for diff in comparison.diffs)
    assert all(diff.missing + diff.extra + diff.changed > 0 for diff in comparison.diffs)


def test_an_unreadable_ledger_object_is_set_aside_with_its_runs() -> None:
    store = MemoryObjectStore()
    good = ev.Event.new(
        ev.RunRequested(tasks=(ev.PlannedTask("a", "a"),)),
        tenant_id=TENANT,
        workspace_id=WORKSPACE,
        run_id="r_good",
        emitted_at=1,
    )
    path = LedgerWriter(store, TENANT, WORKSPACE).append([good])
    bad = f"ledger/{TENANT}/{WORKSPACE}/batches/01BAD.json"
    store.put_if_absent(bad, b'{"events": [{"run_id": "r_lost", "type": "Tas')
    replay = replay_ledger(store, TENANT, WORKSPACE)
    assert replay.paths == (path,)
    assert [u.path for u in replay.unreadable] == [bad]
    assert replay.unreadable[0].run_ids == ("r_lost",)
    assert "not valid JSON" in replay.unreadable[0].problem
    assert replay.state.run("r_good") is not None


def test_run_ids_come_from_the_path_too() -> None:
    prefix = f"ledger/{TENANT}/{WORKSPACE}/"
    assert run_ids_in(f"{prefix}runs/r_9/requested", b"\x00garbage", prefix) == ("r_9",)
    assert run_ids_in(f"{prefix}batches/X.json", b"", prefix) == ()


def test_compare_names_an_unreadable_projection_file() -> None:
    store = MemoryObjectStore()
    event = ev.Event.new(
        ev.RunRequested(tasks=(ev.PlannedTask("a", "a"),)),
        tenant_id=TENANT,
        workspace_id=WORKSPACE,
        run_id="r1",
        emitted_at=1,
    )
    write_and_compact(store, [event], [])
    manifest = SnapshotReader(store, TENANT, WORKSPACE).load().manifest
    assert manifest is not None
    victim = manifest.files_of("runs").files[0]
    store.delete(victim)
    store.put_if_absent(victim, b"PAR1 truncated")
    fresh = MemoryObjectStore()  # the by-path cache is per store: read the damage for real
    for path in store.list_prefix(""):
        fresh.put_if_absent(path, store.get(path).data)
    with pytest.raises(CorruptObjectError, match="servo doctor --repair"):
        compare(
            SnapshotReader(fresh, TENANT, WORKSPACE).load(),
            replay_ledger(fresh, TENANT, WORKSPACE).state,
        )
