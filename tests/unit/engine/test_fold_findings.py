"""Fault findings of the fold: ties broken by a total order, edges never withdrawn."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servo.engine import events as ev
from servo.engine import schema as s

from .strategies import History, arrow_tables_of, fold


def test_tied_task_started_events_fold_to_one_worker_in_every_order() -> None:
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a", 1)
    one = h.emit(ev.TaskStarted(worker_id="worker-b"), "a", 1, aid, at=5_000_000)
    two = h.emit(ev.TaskStarted(worker_id="worker-a"), "a", 1, aid, at=5_000_000)
    base = h.events[:-2]
    forward, backward = fold([*base, one, two]), fold([*base, two, one])
    assert arrow_tables_of(forward) == arrow_tables_of(backward)
    [attempt] = [r for r in forward.rows("attempts") if r.attempt_id == aid]
    assert attempt.worker_id == "worker-a"  # the smaller of the tied values


def test_a_late_dispatch_after_success_never_withdraws_the_edge() -> None:
    h = History()
    h.request({"a": [], "b": ["a"]}, max_attempts=3)
    h.run_attempt("a", 1)
    state = fold(h.events)
    assert state.task("run1", "b") is not None
    assert state.task("run1", "b").deps_satisfied_count == 1  # type: ignore[union-attr]
    late = h.dispatch("a", 2)  # a stale second dispatch of a task that succeeded
    state.apply([h.events[-1]])
    a, b = state.task("run1", "a"), state.task("run1", "b")
    assert a is not None and b is not None
    assert (a.status, a.attempt) == (s.SUCCEEDED, 1)
    assert (b.deps_satisfied_count, b.status) == (1, s.READY)
    stale = [r for r in state.rows("dispatch_outbox") if r.attempt_id == late]
    assert [r.status for r in stale] == [s.OUTBOX_COMPLETED]  # never to be sent
    # Its worker's reports are stale and change nothing.
    finished = h.emit(ev.TaskFinished(outcome="failed", error_type="X"), "a", 2, late)
    assert state.apply([finished]).stale_rejected == 1
    assert state.task("run1", "a").status == s.SUCCEEDED  # type: ignore[union-attr]
    assert arrow_tables_of(fold(list(reversed(h.events)))) == arrow_tables_of(state)


@settings(max_examples=150)
@given(
    late=st.lists(st.sampled_from(["dispatch", "start", "fail", "abandon"]), max_size=6),
    cut=st.data(),
)
def test_edge_satisfaction_is_monotone(late: list[str], cut: st.DataObject) -> None:
    """Whatever arrives after an upstream succeeded, its edge stays satisfied."""
    h = History()
    h.request({"a": [], "b": ["a"]}, max_attempts=3)
    h.run_attempt("a", 1)
    done = len(h.events)
    attempt, aid = 1, ""
    for kind in late:
        if kind == "dispatch":
            attempt += 1
            aid = h.dispatch("a", attempt)
        elif aid and kind == "start":
            h.emit(ev.TaskStarted(worker_id="w2"), "a", attempt, aid)
        elif aid and kind == "fail":
            h.emit(ev.TaskFinished(outcome="failed", error_type="X"), "a", attempt, aid)
        elif aid:
            h.emit(ev.AttemptAbandoned(reason="worker_lost"), "a", attempt, aid)
    extra = h.events[done:]
    order = cut.draw(st.permutations(extra), label="order")
    state = fold(h.events[:done])
    for event in order:
        state.apply([event])
        b = state.task("run1", "b")
        assert b is not None and b.deps_satisfied_count == 1
        assert state.task("run1", "a").status == s.SUCCEEDED  # type: ignore[union-attr]
