"""Durable timers: retries, heartbeat checks and timeouts act only on fresh state."""

from __future__ import annotations

import pytest

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.controllers.timers import TimerSettings, fire_due_timers, request_timers
from servo.engine.fold import EngineState
from servo.engine.ids import new_ulid, timer_id
from servo.runner.timer_wheel import TimerWheel

from .strategies import TENANT, WORKSPACE, History, fold

SCOPE = {"tenant_id": TENANT, "workspace_id": WORKSPACE}
SETTINGS = TimerSettings(heartbeat_timeout_us=10_000_000)


def timers_of(state: EngineState) -> dict[str, s.TimerRow]:
    return {row.timer_id: row for row in state.rows("timers")}


def request(state: EngineState, now: int) -> list[ev.Event]:
    timers = timers_of(state)
    return request_timers(
        state.tasks_of("run1"), timers.get, now=now, settings=SETTINGS, new_id=new_ulid, **SCOPE
    )


def fire(state: EngineState, now: int, watermark: int) -> tuple[list[ev.Event], list[s.TimerRow]]:
    decisions = fire_due_timers(
        state.rows("timers"), state.task, now=now, watermark=watermark, settings=SETTINGS,
        new_id=new_ulid, **SCOPE,
    )  # fmt: skip
    return decisions.events, decisions.lagging


def test_retry_timer_respects_watermark_freshness() -> None:
    h = History()
    h.request({"a": []}, max_attempts=3)
    h.run_attempt("a", 1, "failed", retryable=True)
    state = fold(h.events)
    (requested,) = request(state, now=h.clock)
    assert isinstance(requested.payload, ev.TimerRequested)
    assert requested.payload.kind == "retry"
    assert requested.payload.timer_id == timer_id(TENANT, WORKSPACE, "run1", "a", 1, "retry")
    state.apply([requested])
    # The timer is a function of its cause: asking again later finds it, adds none.
    assert request(state, now=h.clock + 60_000_000) == []
    due = requested.payload.due_at
    # Due, but the projection is older than the due time: hold back, do not act.
    events, lagging = fire(state, now=due + 1, watermark=due - 1)
    assert events == [] and [t.kind for t in lagging] == ["retry"]
    assert state.task("run1", "a").status == s.RETRY_WAIT  # type: ignore[union-attr]
    # Once the watermark passes the due time, the timer fires and the task is READY.
    events, lagging = fire(state, now=due + 2, watermark=due)
    assert lagging == [] and [e.type for e in events] == ["TimerFired"]
    state.apply(events)
    assert state.task("run1", "a").status == s.READY  # type: ignore[union-attr]
    # Delivered again (at-least-once), the timer fires once: nothing changes.
    state.take_changes()
    later = h.emit(ev.TimerFired(timer_id=requested.payload.timer_id), "a", 1, at=due + 3)
    state.apply([*events, later])
    assert all(rows == [] for rows in state.take_changes().values())
    assert timers_of(state)[requested.payload.timer_id].fired_at == events[0].emitted_at


def test_heartbeat_check_guards_against_compaction_lag() -> None:
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a")
    h.emit(ev.TaskStarted(worker_id="w"), "a", 1, aid, at=1_000_000)
    state = fold(h.events)
    (check,) = request(state, now=1_000_000)
    assert isinstance(check.payload, ev.TimerRequested)
    assert check.payload.kind == "heartbeat_check"
    assert check.payload.due_at == 11_000_000
    assert check.payload.timer_id == timer_id(
        TENANT, WORKSPACE, "run1", "a", 1, "heartbeat_check.0"
    )
    state.apply([check])
    assert request(state, now=5_000_000) == []  # requested once, whatever the time
    # The worker did heartbeat at 9 s, but that event is not compacted yet (the
    # watermark lags at 8 s). Acting now would kill a healthy attempt.
    late_beat = h.emit(ev.TaskHeartbeat(), "a", 1, aid, at=9_000_000)
    events, lagging = fire(state, now=11_500_000, watermark=8_000_000)
    assert events == [] and len(lagging) == 1
    # Compaction catches up: the heartbeat is folded and the check finds it fresh.
    state.apply([late_beat])
    events, lagging = fire(state, now=11_600_000, watermark=11_600_000)
    assert [e.type for e in events] == ["TimerFired"]
    state.apply(events)
    assert state.task("run1", "a").status == s.RUNNING  # type: ignore[union-attr]
    # The next check is due a heartbeat timeout after the last beat.
    (next_check,) = request(state, now=11_600_000)
    assert next_check.payload.due_at == 19_000_000  # type: ignore[attr-defined]
    assert next_check.payload.timer_id == timer_id(  # type: ignore[attr-defined]
        TENANT, WORKSPACE, "run1", "a", 1, "heartbeat_check.1"
    )


def test_missed_heartbeat_ends_the_attempt_and_redelivers() -> None:
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a")
    h.emit(ev.TaskStarted(worker_id="w"), "a", 1, aid, at=1_000_000)
    state = fold(h.events)
    state.apply(request(state, now=1_000_000))
    events, _ = fire(state, now=12_000_000, watermark=12_000_000)
    assert [e.type for e in events] == ["TimerFired", "AttemptAbandoned"]
    assert events[1].payload.reason == "heartbeat_missed"  # type: ignore[attr-defined]
    state.apply(events)
    task = state.task("run1", "a")
    assert task is not None and (task.status, task.attempt) == (s.READY, 1)


def test_task_timeout_ends_a_running_attempt_per_retry_policy() -> None:
    h = History()
    h.request({"a": []}, max_attempts=2)
    aid = h.dispatch("a")
    h.emit(ev.TaskStarted(worker_id="w"), "a", 1, aid, at=1_000_000)
    state = fold(h.events)
    task = state.task("run1", "a")
    assert task is not None
    task.timeout_s = 2.0
    kinds = sorted(e.payload.kind for e in request(state, now=1_000_000))  # type: ignore[attr-defined]
    assert kinds == ["heartbeat_check", "task_timeout"]
    state.apply(request(state, now=1_000_000))
    events, _ = fire(state, now=3_000_001, watermark=3_000_001)
    abandoned = [e for e in events if e.type == "AttemptAbandoned"]
    assert [e.payload.reason for e in abandoned] == ["timeout"]  # type: ignore[attr-defined]
    state.apply(events)
    assert state.task("run1", "a").status == s.RETRY_WAIT  # type: ignore[union-attr]


def test_timer_of_an_attempt_that_already_ended_only_fires() -> None:
    h = History()
    h.request({"a": []})
    h.run_attempt("a", 1)
    state = fold(h.events)
    timer = ev.TimerRequested(timer_id="t-late", kind="task_timeout", due_at=5)
    state.apply([h.emit(timer, "a", 1)])
    events, _ = fire(state, now=10, watermark=10)
    assert [e.type for e in events] == ["TimerFired"]


def test_timer_wheel_orders_moves_and_pops_due_timers() -> None:
    wheel = TimerWheel()
    wheel.schedule("b", 20)
    wheel.schedule("a", 10)
    wheel.schedule("c", 30)
    wheel.schedule("b", 5)  # moved earlier; the old entry is ignored
    assert wheel.next_due() == 5 and len(wheel) == 3
    assert wheel.pop_due(10) == ["b", "a"]
    wheel.cancel("c")
    assert wheel.next_due() is None and wheel.pop_due(100) == []


@pytest.mark.parametrize("status", [s.SUCCEEDED, s.FAILED, s.PENDING])
def test_no_attempt_timers_for_tasks_that_are_not_running(status: str) -> None:
    h = History()
    h.request({"a": []})
    state = fold(h.events)
    task = state.task("run1", "a")
    assert task is not None
    task.status, task.attempt_id, task.started_at = status, "x", 1
    assert request(state, now=2) == []
