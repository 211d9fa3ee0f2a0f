"""The anti-entropy sweeper finds each kind of stuck work, and nothing else."""

from __future__ import annotations

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.anti_entropy import SweepSettings, sweep
from servo.engine.fold import EngineState
from servo.engine.ids import dispatch_id, new_ulid

from .strategies import TENANT, WORKSPACE, History, fold

SETTINGS = SweepSettings(
    ready_deadline_us=1_000, enqueue_deadline_us=1_000, start_deadline_us=5_000, timer_grace_us=500
)


def run_sweep(state: EngineState, now: int, inflight: set[str] | None = None,
              delivering: set[str] | None = None, listening_since: int = 0):  # type: ignore[no-untyped-def]  # fmt: skip
    return sweep(
        state.tasks_of("run1"),
        state.rows("timers"),
        state.outbox,
        tenant_id=TENANT,
        workspace_id=WORKSPACE,
        inflight=inflight or set(),
        delivering=delivering or set(),
        now=now,
        settings=SETTINGS,
        new_id=new_ulid,
        listening_since=listening_since,
    )


def test_healthy_state_has_no_findings() -> None:
    h = History()
    h.request({"a": [], "b": ["a"]})
    h.run_attempt("a", 1)
    h.run_attempt("b", 1)
    assert not run_sweep(fold(h.events), now=h.clock + 10**9).findings


def test_ready_task_left_undispatched_is_found() -> None:
    h = History()
    h.request({"a": []})
    state = fold(h.events)
    assert not run_sweep(state, now=h.clock + 10).findings  # within the deadline
    found = run_sweep(state, now=h.clock + 2_000)
    assert [t.task_key for t in found.ready] == ["a"]
    assert found.findings == {"ready_without_dispatch": 1}


def test_outbox_row_never_enqueued_is_handed_over_again() -> None:
    h = History()
    h.request({"a": []})
    h.dispatch("a")
    state = fold(h.events)
    did = dispatch_id(TENANT, WORKSPACE, "run1", "a", 1)
    assert not run_sweep(state, now=h.clock + 2_000, inflight={did}).findings
    found = run_sweep(state, now=h.clock + 2_000)
    assert [r.dispatch_id for r in found.redispatch] == [did]


def test_enqueued_attempt_never_started_is_given_up() -> None:
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a")
    h.emit(ev.DispatchEnqueued(cloud_task_id="d"), "a", 1, aid)
    state = fold(h.events)
    found = run_sweep(state, now=h.clock + 10_000)
    assert [e.payload.reason for e in found.events] == ["worker_lost"]  # type: ignore[attr-defined]
    state.apply(found.events)
    assert state.task("run1", "a").status == s.READY  # type: ignore[union-attr]
    assert found.findings == {"dispatched_not_started": 1}  # the caller counts them


def test_a_start_deadline_runs_from_when_the_caller_began_listening() -> None:
    """A reconciler that (re)started after the attempt was enqueued gives the start
    report its whole deadline: it may be waiting in the queue for the new instance."""
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a")
    h.emit(ev.DispatchEnqueued(cloud_task_id="d"), "a", 1, aid)
    state = fold(h.events)
    restarted = h.clock + 8_000
    assert not run_sweep(state, now=h.clock + 10_000, listening_since=restarted).findings
    found = run_sweep(state, now=restarted + 5_000, listening_since=restarted)
    assert found.findings == {"dispatched_not_started": 1}


def test_overdue_timer_nobody_delivers_is_found() -> None:
    h = History()
    h.request({"a": []}, max_attempts=2)
    h.run_attempt("a", 1, "failed", retryable=True)
    h.retry_timer("a", 1, fire=False)
    state = fold(h.events)
    (timer,) = state.rows("timers")
    assert not run_sweep(state, now=timer.due_at + 10_000, delivering={timer.timer_id}).findings
    found = run_sweep(state, now=timer.due_at + 10_000)
    assert [t.timer_id for t in found.timers] == [timer.timer_id]


def test_the_sweep_says_how_many_tasks_it_examined() -> None:
    h = History()
    h.request({"a": [], "b": [], "c": ["a"]})
    h.dispatch("a")
    state = fold(h.events)
    found = sweep(
        iter(state.swept_tasks("run1")),  # any iterable: a generator counts the same
        (),
        state.outbox,
        tenant_id=TENANT,
        workspace_id=WORKSPACE,
        inflight=set(),
        delivering=set(),
        now=h.clock,
        settings=SETTINGS,
        new_id=new_ulid,
    )
    assert found.examined == 2, "a DISPATCHED and b READY; c waits on a and is not swept"
