"""The fold: idempotent, order-insensitive, guarded against stale attempts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.fold import EngineState
from servo.engine.ids import timer_id
from servo.errors import EngineError

from .strategies import (
    TENANT,
    WORKSPACE,
    History,
    arrow_tables_of,
    fold,
    shuffled_with_duplicates,
    tables_of,
)


def task(state: EngineState, key: str, run: str = "run1") -> s.TaskRow:
    row: s.TaskRow = state.tables["tasks"][(run, key)]
    return row


def run_row(state: EngineState, run: str = "run1") -> s.RunRow:
    row: s.RunRow = state.tables["runs"][(run,)]
    return row


DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_plan_creates_tasks_and_edges_and_roots_become_ready() -> None:
    h = History()
    h.request(DIAMOND)
    state = fold(h.events)
    assert task(state, "a").status == s.READY
    assert [task(state, k).status for k in "bcd"] == [s.PENDING] * 3
    assert task(state, "d").deps_total == 2
    assert run_row(state).status == s.RUN_RUNNING
    assert run_row(state).n_tasks == 4


def test_diamond_succeeds_and_run_completes() -> None:
    h = History()
    h.request(DIAMOND)
    for key in "abcd":
        h.run_attempt(key, 1)
    state = fold(h.events)
    assert {task(state, k).status for k in "abcd"} == {s.SUCCEEDED}
    assert task(state, "d").deps_satisfied_count == 2
    assert task(state, "d").output_location == "outputs/d/1.json"
    run = run_row(state)
    assert (run.status, run.n_succeeded) == (s.RUN_SUCCEEDED, 4)
    assert run.completed_at == task(state, "d").finished_at


def test_failure_skips_downstream_and_fails_run() -> None:
    h = History()
    h.request({"a": [], "b": ["a"], "c": ["b"], "x": []})
    h.run_attempt("a", 1, "failed")
    h.run_attempt("x", 1)
    state = fold(h.events)
    assert task(state, "a").status == s.FAILED
    assert task(state, "a").error_type == "ValueError"
    assert task(state, "b").status == s.SKIPPED
    assert task(state, "c").status == s.SKIPPED
    assert task(state, "x").status == s.SUCCEEDED
    dep = state.tables["dep_satisfaction"][("run1", "b", "a")]
    assert dep.resolution == s.RESOLUTION_FAILED
    assert (task(state, "b").deps_satisfied_count, task(state, "c").deps_satisfied_count) == (0, 0)
    assert run_row(state).status == s.RUN_FAILED
    assert (run_row(state).n_failed, run_row(state).n_skipped) == (1, 2)


def test_retryable_failure_waits_for_timer_then_is_ready_for_next_attempt() -> None:
    h = History()
    h.request({"a": []}, max_attempts=3)
    h.run_attempt("a", 1, "failed", retryable=True)
    assert task(fold(h.events), "a").status == s.RETRY_WAIT
    h.retry_timer("a", 1)
    state = fold(h.events)
    assert task(state, "a").status == s.READY
    assert task(state, "a").attempt == 1
    h.run_attempt("a", 2)
    state = fold(h.events)
    assert (task(state, "a").status, task(state, "a").attempt) == (s.SUCCEEDED, 2)


def test_non_retryable_or_last_attempt_fails() -> None:
    h = History()
    h.request({"a": []}, max_attempts=2)
    h.run_attempt("a", 1, "failed", retryable=True)
    h.retry_timer("a", 1)
    h.run_attempt("a", 2, "failed", retryable=True)
    assert task(fold(h.events), "a").status == s.FAILED


def test_outbox_row_per_dispatch_with_deterministic_ids() -> None:
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a")
    state = fold(h.events)
    (row,) = state.tables["dispatch_outbox"].values()
    assert row.dispatch_id == f"dispatch:{TENANT}:{WORKSPACE}:run1:a:1"
    assert row.cloud_task_id.startswith("d_") and len(row.cloud_task_id) == 66
    assert (row.status, row.attempt_id) == (s.OUTBOX_PENDING, aid)
    assert task(state, "a").status == s.DISPATCHED
    h.emit(ev.DispatchEnqueued(cloud_task_id=row.cloud_task_id), "a", 1, aid)
    assert next(iter(fold(h.events).tables["dispatch_outbox"].values())).status == s.OUTBOX_ENQUEUED


def test_cancel_cancels_pending_tasks_but_not_finished_ones() -> None:
    h = History()
    h.request({"a": [], "b": ["a"]})
    h.run_attempt("a", 1)
    h.emit(ev.RunCancelRequested(reason="user"))
    state = fold(h.events)
    assert task(state, "a").status == s.SUCCEEDED
    assert task(state, "b").status == s.CANCELLED
    assert run_row(state).status == s.RUN_CANCELLED


def test_cancel_folded_before_the_request_still_cancels() -> None:
    h = History()
    h.request({"a": []})
    h.emit(ev.RunCancelRequested(reason="user"))
    state = fold(list(reversed(h.events)))
    assert task(state, "a").status == s.CANCELLED
    assert run_row(state).request_event_id == h.events[0].event_id


def _history_with_every_kind_of_event() -> History:
    """A run with a retried failure, a fired retry timer, a heartbeat check, a running
    attempt the cancel abandons, and a cancel request."""
    h = History()
    h.request(DIAMOND, max_attempts=2)
    h.run_attempt("a", 1, "failed", retryable=True)
    h.retry_timer("a", 1)
    h.run_attempt("a", 2)
    h.run_attempt("b", 1)
    aid = h.dispatch("c", 1)
    h.emit(ev.TaskStarted(worker_id="w"), "c", 1, aid)
    check = timer_id(TENANT, WORKSPACE, "run1", "c", 1, "heartbeat_check.0")
    h.emit(ev.TimerRequested(timer_id=check, kind="heartbeat_check", due_at=h.clock), "c", 1)
    h.emit(ev.TimerFired(timer_id=check), "c", 1)
    h.emit(ev.RunCancelRequested(reason="user"))
    h.emit(ev.AttemptAbandoned(reason="cancelled"), "c", 1, aid)
    return h


def test_duplicate_event_is_noop() -> None:
    h = _history_with_every_kind_of_event()
    state = fold(h.events)
    assert [task(state, k).status for k in "abcd"] == [
        s.SUCCEEDED, s.SUCCEEDED, s.CANCELLED, s.CANCELLED
    ]  # fmt: skip
    before = tables_of(state)
    state.take_changes()
    feed = state.follow()
    for event in h.events:
        state.apply([event, event])
        # Nothing changed, so no row may be reported as changed: neither to the
        # publisher (a spurious delta) nor to another reader of the feed.
        assert all(rows == [] for rows in state.take_changes().values()), event.type
        assert feed.take() == {}, event.type
    state.apply(h.events)
    assert tables_of(state) == before
    assert all(rows == [] for rows in state.take_changes().values())
    assert feed.take() == {}


def test_duplicate_of_a_current_event_is_not_counted_stale() -> None:
    h = History()
    h.request(DIAMOND)
    h.run_attempt("a", 1)
    state = fold(h.events)
    for event in h.events:
        assert state.apply([event, event]).stale_rejected == 0


def test_the_first_cancel_request_wins() -> None:
    h = History()
    h.request({"a": [], "b": ["a"]})
    first = h.emit(ev.RunCancelRequested(reason="user"), at=5_000_000)
    later = h.emit(ev.RunCancelRequested(reason="again"), at=9_000_000)
    for order in ([h.events[0], first, later], [h.events[0], later, first]):
        state = fold(order)
        assert run_row(state).cancel_requested_at == 5_000_000
        assert [task(state, k).finished_at for k in "ab"] == [5_000_000, 5_000_000]
    # Once the first is folded, a later request changes nothing at all.
    state = fold([h.events[0], first])
    state.take_changes()
    feed = state.follow()
    state.apply([later])
    assert all(rows == [] for rows in state.take_changes().values())
    assert feed.take() == {}


def test_out_of_order_events_same_result() -> None:
    h = History()
    h.request(DIAMOND)
    for key in "abcd":
        h.run_attempt(key, 1)
    in_order = fold(h.events)
    assert arrow_tables_of(fold(list(reversed(h.events)))) == arrow_tables_of(in_order)
    # The worker's finish folded before its own dispatch, and the plan last.
    shuffled = h.events[5:] + h.events[1:5] + h.events[:1]
    assert arrow_tables_of(fold(shuffled, batches=[3, 7])) == arrow_tables_of(in_order)


def test_two_requests_of_one_run_fold_to_the_earlier_in_any_order() -> None:
    h = History()
    first = h.request({"a": []})
    assert isinstance(first.payload, ev.RunRequested)
    # A second writer raced on the same run with another request.
    second = h.emit(ev.RunRequested(tasks=first.payload.tasks, idempotency_key="other"))
    forward, backward = fold([first, second]), fold([second, first])
    assert arrow_tables_of(forward) == arrow_tables_of(backward)
    run = run_row(backward)
    assert (run.request_event_id, run.idempotency_key) == (first.event_id, "key-run1")


def test_stale_attempt_event_is_rejected() -> None:
    h = History()
    h.request({"a": [], "b": ["a"]}, max_attempts=3)
    first = h.dispatch("a", 1)
    h.emit(ev.TaskStarted(worker_id="w1"), "a", 1, first)
    h.emit(ev.AttemptAbandoned(reason="timeout", retryable=True), "a", 1, first)
    h.retry_timer("a", 1)
    second = h.dispatch("a", 2)
    state = fold(h.events)
    assert (task(state, "a").attempt_id, task(state, "a").status) == (second, s.DISPATCHED)
    # The first attempt's worker reports success late; an unknown attempt_id reports too.
    late = h.emit(ev.TaskFinished(outcome="succeeded"), "a", 1, first)
    forged = h.emit(ev.TaskFinished(outcome="succeeded"), "a", 2, "NOT-DISPATCHED")
    stats = state.apply([late, forged])
    assert stats.stale_rejected == 2
    assert task(state, "a").status == s.DISPATCHED
    assert task(state, "b").status == s.PENDING
    # Order does not matter: the same facts in any order give the same tables.
    assert arrow_tables_of(fold(list(reversed(h.events)))) == arrow_tables_of(state)


def test_late_success_of_a_timed_out_attempt_does_not_win() -> None:
    h = History()
    h.request({"a": []}, max_attempts=1)
    aid = h.dispatch("a", 1)
    h.emit(ev.AttemptAbandoned(reason="timeout", retryable=False), "a", 1, aid)
    h.emit(ev.TaskFinished(outcome="succeeded"), "a", 1, aid)
    for order in (h.events, list(reversed(h.events))):
        state = fold(order)
        assert task(state, "a").status == s.FAILED
        assert task(state, "a").error_type == "timeout"


def test_duplicate_task_finished_does_not_double_decrement() -> None:
    h = History()
    h.request({"a": [], "b": [], "c": ["a", "b"]})
    aid = h.run_attempt("a", 1)
    finished = h.events[-1]
    # The same finish delivered twice, and re-emitted by a retrying worker with a new id.
    redelivered = h.emit(finished.payload, "a", 1, aid)
    state = fold([*h.events, finished])
    c = task(state, "c")
    assert (c.deps_satisfied_count, c.deps_total, c.status) == (1, 2, s.PENDING)
    assert state.tables["dep_satisfaction"][("run1", "c", "a")].resolution == s.RESOLUTION_SUCCESS
    state.apply([finished, redelivered, finished])
    assert task(state, "c").deps_satisfied_count == 1
    h.run_attempt("b", 1)
    state.apply(h.events[-5:])
    assert (task(state, "c").deps_satisfied_count, task(state, "c").status) == (2, s.READY)


def test_only_successful_edges_count_as_satisfied() -> None:
    h = History()
    h.request({"a": [], "b": [], "c": ["b"], "d": ["a", "b", "c"]})
    h.run_attempt("a", 1)
    h.run_attempt("b", 1, "failed")
    for order in (h.events, list(reversed(h.events))):
        state = fold(order)
        resolutions = {
            up: state.tables["dep_satisfaction"][("run1", "d", up)].resolution for up in "abc"
        }
        assert resolutions == {
            "a": s.RESOLUTION_SUCCESS, "b": s.RESOLUTION_FAILED, "c": s.RESOLUTION_SKIPPED
        }  # fmt: skip
        d = task(state, "d")
        assert (d.status, d.deps_satisfied_count, d.deps_total) == (s.SKIPPED, 1, 3)
        assert task(state, "c").deps_satisfied_count == 0


def test_events_of_another_scope_are_refused() -> None:
    event = ev.Event.new(ev.RunRequested(), tenant_id="other", workspace_id=WORKSPACE, run_id="r")
    with pytest.raises(EngineError, match="belongs to other/w1"):
        EngineState(TENANT, WORKSPACE).apply([event])


def test_from_rows_round_trip_continues_identically() -> None:
    h = History()
    h.request(DIAMOND)
    h.run_attempt("a", 1)
    head, tail = h.events[:4], h.events[4:]
    first = fold(head)
    rows = {spec.name: [spec.from_arrow(spec.to_arrow(first.rows(spec.name)))][0]
            for spec in s.TABLES}  # fmt: skip
    reloaded = EngineState.from_rows(TENANT, WORKSPACE, rows)
    reloaded.apply(tail)
    assert arrow_tables_of(reloaded) == arrow_tables_of(fold(h.events))


@settings(max_examples=150, deadline=None)
@given(shuffled_with_duplicates())
def test_any_permutation_duplication_and_batching_gives_identical_tables(
    case: tuple[list[ev.Event], list[ev.Event], list[int]],
) -> None:
    events, permuted, cuts = case
    assert arrow_tables_of(fold(permuted, cuts)) == arrow_tables_of(fold(events))


@settings(max_examples=75, deadline=None)
@given(shuffled_with_duplicates())
def test_incremental_after_reload_equals_rebuild(
    case: tuple[list[ev.Event], list[ev.Event], list[int]],
) -> None:
    events, permuted, cuts = case
    cut = cuts[0] if cuts else len(permuted) // 2
    state = fold(permuted[:cut])
    rows = {spec.name: list(state.rows(spec.name)) for spec in s.TABLES}
    reloaded = EngineState.from_rows(TENANT, WORKSPACE, rows)
    reloaded.apply(permuted[cut:])
    assert arrow_tables_of(reloaded) == arrow_tables_of(fold(events))


def _indexes_agree_with_the_tables(state: EngineState) -> None:
    swept = {(t.run_id, t.task_key) for t in state.swept_tasks()}
    assert swept == {
        key for key, task in state.tables["tasks"].items() if task.status in (s.READY, s.DISPATCHED)
    }
    for run in state.rows("runs"):
        assert {t.timer_id for t in state.timers_of_run(run.run_id)} == {
            t.timer_id for t in state.timers() if t.run_id == run.run_id
        }


@settings(max_examples=75, deadline=None)
@given(shuffled_with_duplicates())
def test_the_sweep_and_timer_indexes_follow_any_order_of_events(
    case: tuple[list[ev.Event], list[ev.Event], list[int]],
) -> None:
    """The sweep reads only READY and DISPATCHED tasks through an index: after any
    fold, and after a reload, the index holds exactly those tasks."""
    _, permuted, cuts = case
    state = EngineState(TENANT, WORKSPACE)
    start = 0
    for cut in [*cuts, len(permuted)]:
        state.apply(permuted[start:cut])
        start = max(start, cut)
        _indexes_agree_with_the_tables(state)
    rows = {spec.name: list(state.rows(spec.name)) for spec in s.TABLES}
    _indexes_agree_with_the_tables(EngineState.from_rows(TENANT, WORKSPACE, rows))


def test_lost_worker_is_redelivered_without_using_the_retry_budget() -> None:
    h = History()
    h.request({"a": []}, max_attempts=1)
    for attempt in (1, 2):
        aid = h.dispatch("a", attempt)
        h.emit(ev.AttemptAbandoned(reason="worker_lost", retryable=True), "a", attempt, aid)
        assert task(fold(h.events), "a").status == s.READY
    h.run_attempt("a", 3)
    assert task(fold(h.events), "a").status == s.SUCCEEDED


def test_lost_worker_redeliveries_are_bounded() -> None:
    h = History()
    h.request({"a": []})
    for attempt in range(1, 6):
        aid = h.dispatch("a", attempt)
        h.emit(ev.AttemptAbandoned(reason="worker_lost", retryable=True), "a", attempt, aid)
    state = fold(h.events)
    assert (task(state, "a").status, task(state, "a").error_type) == (s.FAILED, "worker_lost")
