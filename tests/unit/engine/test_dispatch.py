"""Dispatch: deterministic queue ids, and duplicates never create a second task."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.local import LocalPoolDispatcher
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ids import cloud_task_id, dispatch_id, timer_id, timer_task_id
from servo.engine.request import TaskRequest, build_request
from servo.testing import FakeTaskQueue
from servo.worker.runtime import TaskReport, TaskRuntime

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
    assert tid == f"timer:{tenant}:{workspace}:{run}:{task}:{attempt}:retry"
    assert tid == timer_id(tenant, workspace, run, task, attempt, "retry")
    assert re.fullmatch(r"t_[0-9a-f]{64}", timer_task_id(tid))
    assert timer_task_id(tid) != cloud_task_id(did)


#: Ids recorded in ledgers and queues: the same in every process and every release.
GOLDEN = {
    "cloud_task_id": "d_17bbef1457ef21492aff9f7b4939b5d25f292d497ec2d53364301d98b764729d",
    "timer_task_id": "t_8c6aa2fa61e083a11dc6878c3322eded48d697fbd2d450df3fb8c5994f4e0a84",
    "run_id_for_key": "r_6da366d8b639b51218589a2f63b34c62",
}
_IDS_SCRIPT = """
import json
from servo.engine.ids import cloud_task_id, dispatch_id, run_id_for_key, timer_id, timer_task_id
print(json.dumps({
    "cloud_task_id": cloud_task_id(dispatch_id("t1", "w1", "run1", "a", 1)),
    "timer_task_id": timer_task_id(timer_id("t1", "w1", "run1", "a", 1, "retry")),
    "run_id_for_key": run_id_for_key("t1", "w1", "nightly"),
}))
"""


def test_cloud_task_id_is_the_same_in_every_process() -> None:
    """Two processes with differently salted str hashes make the same ids (a restarted
    runner, a worker process and the next release must all agree)."""
    import servo

    src = str(Path(servo.__file__).resolve().parents[1])
    seen = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", _IDS_SCRIPT], env=env, capture_output=True, text=True,
            check=True, timeout=60,
        )  # fmt: skip
        seen.append(json.loads(done.stdout))
    assert seen[0] == seen[1] == GOLDEN


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


class _CountingRuntime:
    """Stands in for the worker runtime: counts executions."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def execute(self, request: TaskRequest) -> TaskReport:
        self.ran.append(request.cloud_task_id)
        return TaskReport()

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        return False

    def close(self) -> None:
        return None


def test_duplicate_outbox_no_duplicate_run_in_the_local_pool() -> None:
    h = History()
    h.request({"a": []})
    h.dispatch("a")
    request = _request_for(h)
    runtime = _CountingRuntime()
    ended = threading.Semaphore(0)
    pool = LocalPoolDispatcher(
        cast(TaskRuntime, runtime), lambda _request, _result: ended.release(), concurrency=2
    )
    try:
        # Handed the same dispatch again, at once or after it ended: answered like a
        # real queue, and never run a second time.
        first, again = pool.enqueue(request), [pool.enqueue(request)]
        assert ended.acquire(timeout=10)
        again.append(pool.enqueue(_request_for(h)))
    finally:
        pool.close(5)
    assert (first, again) == (EnqueueOutcome.CREATED, [EnqueueOutcome.ALREADY_EXISTS] * 2)
    assert runtime.ran == [request.cloud_task_id]
    assert not ended.acquire(timeout=0.05) and pool.pending == 0


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
