"""Dispatch: deterministic queue ids, and duplicates never create a second task."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.request import TaskRequest, build_request
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ids import cloud_task_id, dispatch_id, timer_id, timer_task_id
from servo.testing import FakeTaskQueue

from .strategies import TENANT, WORKSPACE, History, fold

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=20)


@given(ids, ids, ids, ids, st.integers(1, 50))
def test_cloud_task_id_is_deterministic(
    tenant: str, workspace: str, run: str, task: str, attempt: int
) -> None:
    did = dispatch_id(tenant, workspace, run, task, attempt)
    assert did == f"dispatch:{tenant}:{workspace}:{run}:{task}:{attempt}"
    assert cloud_task_id(did) == cloud_task_id(dispatch_id(tenant, workspace, run, task, attempt))
    assert re.fullmatch(r"d_[0-9a-f]{64}", cloud_task_id(did))
    assert cloud_task_id(did) != cloud_task_id(
        dispatch_id(tenant, workspace, run, task, attempt + 1)
    )
    tid = timer_id(tenant, workspace, run, task, attempt, "retry")
    assert re.fullmatch(r"t_[0-9a-f]{64}", timer_task_id(tid))
    assert timer_task_id(tid) != cloud_task_id(did)


def _request_for(history: History) -> TaskRequest:
    state = fold(history.events)
    (row,) = [r for r in state.rows("dispatch_outbox") if r.status == s.OUTBOX_PENDING]
    task = state.task(row.run_id, row.task_key)
    assert task is not None
    return build_request(TENANT, WORKSPACE, row, task, {}, (), None)


def test_duplicate_outbox_no_duplicate_cloud_task() -> None:
    h = History()
    h.request({"a": []})
    aid = h.dispatch("a")
    request = _request_for(h)
    queue = FakeTaskQueue(clock=lambda: 0.0)
    # The dispatcher handles the same pending outbox row twice (a redelivered
    # notification, or a restart before DispatchEnqueued was folded).
    outcomes = [queue.enqueue(request), queue.enqueue(_request_for(h))]
    assert outcomes == [EnqueueOutcome.CREATED, EnqueueOutcome.ALREADY_EXISTS]
    assert len(queue.created) == 1 and queue.conflicts == 1
    # Both dispatch attempts record DispatchEnqueued; the outbox shows one enqueue.
    for _ in outcomes:
        h.emit(ev.DispatchEnqueued(cloud_task_id=request.cloud_task_id), "a", 1, aid)
    state = fold(h.events)
    (row,) = state.rows("dispatch_outbox")
    assert (row.status, row.cloud_task_id) == (s.OUTBOX_ENQUEUED, request.cloud_task_id)
    assert row.enqueued_at == min(e.emitted_at for e in h.events if e.type == "DispatchEnqueued")


def test_queue_dedup_is_temporary_so_the_outbox_is_the_guard() -> None:
    h = History()
    h.request({"a": []})
    h.dispatch("a")
    now = [0.0]
    queue = FakeTaskQueue(clock=lambda: now[0])
    request = _request_for(h)
    assert queue.enqueue(request) is EnqueueOutcome.CREATED
    now[0] = 24 * 3600.0 + 1
    assert queue.enqueue(request) is EnqueueOutcome.CREATED  # the queue forgot the name


def test_two_controllers_racing_on_one_attempt_dispatch_one_attempt_id() -> None:
    h = History()
    h.request({"a": []})
    first = h.dispatch("a", 1)
    h.dispatch("a", 1)  # a second controller on the same snapshot
    state = fold(list(reversed(h.events)))
    (row,) = state.rows("dispatch_outbox")
    assert row.attempt_id == first
    task = state.task("run1", "a")
    assert task is not None and task.attempt_id == first
