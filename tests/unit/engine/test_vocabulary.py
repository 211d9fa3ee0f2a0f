"""The engine's vocabularies are StrEnums: typed in memory, the same strings on disk.

Ledger events and projection rows written before the vocabularies were enums read
back as members, and what is written now is byte-for-byte what was written before.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.vocabulary import (
    AbandonReason,
    OutboxStatus,
    RunStatus,
    TaskStatus,
    TimerKind,
    TimerStatus,
)
from servo.errors import EventDecodeError
from servo.resilience.retry import RetryPolicy

from .strategies import TENANT, WORKSPACE, History, fold

#: A ledger object as an earlier Servo wrote it (the retry policy as plain parameters).
OLD_LEDGER = json.dumps({"events": [
    {"schema_version": 1, "event_id": "01E1", "type": "RunRequested", "tenant_id": TENANT,
     "workspace_id": WORKSPACE, "run_id": "r1", "task_key": None, "attempt": None,
     "attempt_id": None, "emitted_at": 10, "payload": {"tasks": [
         {"task_key": "a", "asset_key": "a", "partition_key": None, "deps": [],
          "max_attempts": 3, "timeout_s": None, "pinned_inputs": [],
          "retry": {"max_attempts": 3, "initial_delay": 1.0, "max_delay": 60.0,
                    "backoff_multiplier": 2.0, "jitter": 0.0, "retry_on": ["network"],
                    "dont_retry_on": ["validation"], "retry_on_timeout": False}}],
         "idempotency_key": None, "selection": None, "defs_source": None}},
    {"schema_version": 1, "event_id": "01E2", "type": "TimerRequested", "tenant_id": TENANT,
     "workspace_id": WORKSPACE, "run_id": "r1", "task_key": "a", "attempt": 1,
     "attempt_id": None, "emitted_at": 11,
     "payload": {"timer_id": "tm", "kind": "heartbeat_check", "due_at": 99}},
    {"schema_version": 1, "event_id": "01E3", "type": "AttemptAbandoned", "tenant_id": TENANT,
     "workspace_id": WORKSPACE, "run_id": "r1", "task_key": "a", "attempt": 1,
     "attempt_id": "A1", "emitted_at": 12,
     "payload": {"reason": "worker_lost", "retryable": False, "detail": None}},
]}, separators=(",", ":"), sort_keys=True).encode()  # fmt: skip


def test_members_are_their_strings_and_keep_their_module_names() -> None:
    assert s.READY is TaskStatus.READY and s.READY == "READY"
    assert s.RUN_RUNNING is RunStatus.RUNNING and s.OUTBOX_PENDING is OutboxStatus.PENDING
    assert s.TIMER_FIRED is TimerStatus.FIRED
    assert f"{TimerKind.HEARTBEAT_CHECK}.0" == "heartbeat_check.0"  # timer id suffixes
    assert json.dumps([AbandonReason.POOL_LOST]) == '["pool_lost"]'


def test_an_old_ledger_decodes_to_members_and_encodes_to_the_same_bytes() -> None:
    events = ev.decode_events(OLD_LEDGER)
    run, timer, abandoned = (e.payload for e in events)
    assert isinstance(run, ev.RunRequested)
    assert run.tasks[0].retry == RetryPolicy(
        max_attempts=3, initial_delay=1.0, max_delay=60.0, jitter=0.0,
        retry_on=frozenset({"network"}), dont_retry_on=frozenset({"validation"}),  # type: ignore[arg-type]
        retry_on_timeout=False,
    )  # fmt: skip
    assert isinstance(timer, ev.TimerRequested) and timer.kind is TimerKind.HEARTBEAT_CHECK
    assert isinstance(abandoned, ev.AttemptAbandoned)
    assert abandoned.reason is AbandonReason.WORKER_LOST
    assert ev.encode_events(events) == OLD_LEDGER


def test_a_value_outside_a_vocabulary_is_a_decode_error() -> None:
    raw = json.loads(OLD_LEDGER)
    raw["events"][2]["payload"]["reason"] = "bored"
    with pytest.raises(EventDecodeError, match="bored"):
        ev.decode_events(json.dumps(raw).encode())


def _retried_history() -> History:
    h = History()
    h.request({"a": [], "b": ["a"]}, max_attempts=2)
    h.run_attempt("a", 1, "failed", retryable=True)
    h.retry_timer("a", 1, fire=False)
    h.dispatch("a", 2)
    return h


def test_projection_rows_read_back_as_members() -> None:
    state = fold(_retried_history().events)
    for spec in s.TABLES:
        rows = list(state.rows(spec.name))
        again = spec.from_arrow(spec.to_arrow(rows))
        assert sorted(again, key=spec.key_of) == sorted(rows, key=spec.key_of)
    tasks = s.TASKS.from_arrow(s.TASKS.to_arrow(state.rows("tasks")))
    assert {type(t.status) for t in tasks} == {TaskStatus}
    (run,) = s.RUNS.from_arrow(s.RUNS.to_arrow(state.rows("runs")))
    assert run.status is RunStatus.RUNNING
    (timer,) = s.TIMERS.from_arrow(s.TIMERS.to_arrow(state.rows("timers")))
    assert (timer.kind, timer.status) == (TimerKind.RETRY, TimerStatus.SCHEDULED)
    assert type(timer.kind) is TimerKind
    outbox = s.DISPATCH_OUTBOX.from_arrow(s.DISPATCH_OUTBOX.to_arrow(state.rows("dispatch_outbox")))
    assert {o.status for o in outbox} == {OutboxStatus.COMPLETED, OutboxStatus.PENDING}
    assert all(type(o.status) is OutboxStatus for o in outbox)


def test_projection_columns_hold_the_plain_strings() -> None:
    state = fold(_retried_history().events)
    tasks = list(state.rows("tasks"))
    as_strings = [replace(t, status=str(t.status)) for t in tasks]
    table = s.TASKS.to_arrow(tasks)
    assert table.equals(s.TASKS.to_arrow(as_strings))
    assert sorted(table.column("status").to_pylist()) == ["DISPATCHED", "PENDING"]


def test_a_timer_fired_before_its_request_was_folded_keeps_an_empty_kind() -> None:
    h = History()
    h.request({"a": []})
    h.emit(ev.TimerFired(timer_id="tm"), "a", 1)
    (timer,) = fold(h.events).rows("timers")
    assert timer.kind == s.KIND_NOT_YET_KNOWN
    (again,) = s.TIMERS.from_arrow(s.TIMERS.to_arrow([timer]))
    assert (again.kind, again.status) == ("", TimerStatus.FIRED)


def test_an_unknown_value_in_a_projection_is_refused() -> None:
    state = fold(_retried_history().events)
    rows = list(state.rows("tasks"))
    rows[0].status = "WAITING"  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"tasks\.status: unknown value 'WAITING'"):
        s.TASKS.from_arrow(s.TASKS.to_arrow(rows))


def test_the_planned_policy_is_stored_as_before() -> None:
    """`tasks.retry` holds the JSON an earlier Servo wrote for the same policy."""
    policy = RetryPolicy(max_attempts=4, initial_delay=0.5)
    h = History()
    h.emit(ev.RunRequested(tasks=(ev.PlannedTask("a", "a", max_attempts=4, retry=policy),)))
    (task,) = fold(h.events).rows("tasks")
    assert task.retry == json.dumps(policy.to_dict(), sort_keys=True)
    assert RetryPolicy.from_json(task.retry) == policy
