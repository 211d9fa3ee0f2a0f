"""Attempts ended with their broken worker pool: redelivered free, never blamed.

`pool_lost` (the pool broke through another attempt's crash or its manager's death)
uses neither the redelivery nor the retry budget, is bounded by `MAX_POOL_LOSSES`,
and its result may be reused. A crash attributed to an attempt (`worker_lost` with a
detail) is charged to that attempt alone and its detail becomes the task's error.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.derive import MAX_POOL_LOSSES, MAX_REDELIVERIES, reusable_attempt_ids
from servo.engine.fold import EngineState

from .strategies import History, arrow_tables_of, fold

CRASH = "worker process exited with code 1 while running a"


def task(state: EngineState, key: str = "a") -> s.TaskRow:
    row: s.TaskRow = state.tables["tasks"][("run1", key)]
    return row


def lose_pool(h: History, attempt: int, name: str = "a") -> str:
    aid = h.dispatch(name, attempt)
    h.emit(ev.TaskStarted(worker_id="process-1"), name, attempt, aid)
    h.emit(ev.AttemptAbandoned(reason="pool_lost", retryable=True), name, attempt, aid)
    return aid


def test_a_lost_pool_uses_neither_the_redelivery_nor_the_retry_budget() -> None:
    h = History()
    h.request({"a": []}, max_attempts=1)
    for attempt in range(1, MAX_REDELIVERIES + 3):
        lose_pool(h, attempt)
        assert task(fold(h.events)).status == s.READY, attempt
    aid = h.dispatch("a", MAX_REDELIVERIES + 3)
    h.emit(ev.AttemptAbandoned(reason="worker_lost"), "a", MAX_REDELIVERIES + 3, aid)
    assert task(fold(h.events)).status == s.READY  # its own first loss: still redelivered
    h.run_attempt("a", MAX_REDELIVERIES + 4, outcome="failed", retryable=True)
    assert task(fold(h.events)).status == s.FAILED  # max_attempts=1: one real failure
    h2 = History()
    h2.request({"a": []}, max_attempts=2)
    lose_pool(h2, 1)
    h2.run_attempt("a", 2, outcome="failed", retryable=True)
    assert task(fold(h2.events)).status == s.RETRY_WAIT  # the pool loss took no attempt


def test_pool_losses_are_bounded() -> None:
    h = History()
    h.request({"a": []})
    for attempt in range(1, MAX_POOL_LOSSES + 1):
        lose_pool(h, attempt)
    assert task(fold(h.events)).status == s.READY
    lose_pool(h, MAX_POOL_LOSSES + 1)
    state = fold(h.events)
    assert (task(state).status, task(state).error_type) == (s.FAILED, "pool_lost")


def test_a_crash_detail_is_the_tasks_error_message() -> None:
    h = History()
    h.request({"a": []})
    for attempt in range(1, MAX_REDELIVERIES + 2):
        aid = h.dispatch("a", attempt)
        h.emit(ev.AttemptAbandoned(reason="worker_lost", detail=CRASH), "a", attempt, aid)
    row = task(fold(h.events))
    assert (row.status, row.error_type, row.error_message) == (s.FAILED, "worker_lost", CRASH)
    h2 = History()
    h2.request({"a": []})
    aid = h2.dispatch("a", 1)
    h2.emit(ev.AttemptAbandoned(reason="timeout"), "a", 1, aid)
    assert task(fold(h2.events)).error_message == "attempt abandoned: timeout"


def test_the_result_of_an_attempt_lost_with_its_pool_may_be_reused() -> None:
    h = History()
    h.request({"a": []})
    first = lose_pool(h, 1)
    state = fold(h.events)
    assert reusable_attempt_ids(state.attempts_of("run1", "a"), 2) == (first,)


def test_detail_survives_the_ledger_encoding() -> None:
    event = History().emit(ev.AttemptAbandoned(reason="pool_lost", detail="x"), "a", 1, "A")
    assert ev.Event.from_dict(event.to_dict()) == event
    raw = event.to_dict()
    del raw["payload"]["detail"]  # written before the field existed
    assert ev.Event.from_dict(raw).payload == ev.AttemptAbandoned(reason="pool_lost")


@st.composite
def pool_histories(draw: st.DrawFn) -> list[ev.Event]:
    """Attempts ended by pool losses, crashes with details, timeouts, successes."""
    h = History()
    names = ["a", "b", "c"]
    h.request({"a": [], "b": [], "c": ["a"]}, max_attempts=2)
    for name in names:
        for attempt in range(1, draw(st.integers(1, 6)) + 1):
            kind = draw(st.sampled_from(["pool_lost", "worker_lost", "timeout", "ok", "fail"]))
            if kind in ("ok", "fail"):
                h.run_attempt(name, attempt, "succeeded" if kind == "ok" else "failed", True)
                continue
            aid = h.dispatch(name, attempt)
            detail = draw(st.sampled_from([None, CRASH, "pool manager died"]))
            at = h.clock if draw(st.booleans()) else None  # ties with the previous event
            h.emit(ev.AttemptAbandoned(reason=kind, detail=detail), name, attempt, aid, at=at)
            if draw(st.booleans()):  # a second end for the same attempt
                h.emit(ev.AttemptAbandoned(reason="pool_lost"), name, attempt, aid, at=at)
    return h.events


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pool_losses_fold_the_same_in_any_order_with_duplicates(data: st.DataObject) -> None:
    events = data.draw(pool_histories())
    extra = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    permuted = data.draw(st.permutations(events + extra))
    cuts = data.draw(st.lists(st.integers(0, len(permuted)), max_size=4))
    assert arrow_tables_of(fold(permuted, cuts)) == arrow_tables_of(fold(events))
