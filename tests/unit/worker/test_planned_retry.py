"""Retryability comes from the retry policy planned with the run, not the definitions
a worker loads later: every attempt of a run is judged by the same policy."""

from __future__ import annotations

import json
import pickle

import pytest

from servo import Definitions, asset
from servo.engine import events as ev
from servo.engine.controllers.run import plan_tasks
from servo.engine.fold import EngineState
from servo.engine.request import InputRef, TaskRequest, build_request
from servo.engine.vocabulary import TaskStatus
from servo.resilience.retry import ErrorKind, RetryPolicy
from servo.storage.memory import MemoryObjectStore
from servo.worker.runtime import TaskRuntime

T, W, RUN = "t1", "w1", "run1"
POLICY = RetryPolicy(max_attempts=3, initial_delay=0.5, jitter=0)


def _definitions(retry: RetryPolicy | None) -> Definitions:
    @asset(name="flaky", retry=retry)
    def flaky() -> int:
        raise ConnectionError("the service is down")  # a network error: retryable kind

    return Definitions(assets=[flaky])


class _Sink:
    def emit(self, event: ev.Event) -> str:
        return f"ledger/{event.event_id}"


def _event(payload: ev.Payload, at: int, attempt_id: str | None = None) -> ev.Event:
    attempt = None if attempt_id is None else 1
    task_key = None if attempt_id is None else "flaky"
    return ev.Event.new(
        payload,
        tenant_id=T,
        workspace_id=W,
        run_id=RUN,
        task_key=task_key,
        attempt=attempt,
        attempt_id=attempt_id,
        emitted_at=at,
    )


def _planned_and_dispatched(planned_with: Definitions) -> tuple[EngineState, TaskRequest]:
    """A run planned from `planned_with`, its first attempt dispatched, and its request."""
    state = EngineState(T, W)
    state.apply(
        [
            _event(ev.RunRequested(tasks=plan_tasks(planned_with, ["flaky"])), 1),
            _event(ev.DispatchRequested(), 2, attempt_id="A1"),
        ]
    )
    (outbox,) = state.rows("dispatch_outbox")
    task = state.task(RUN, "flaky")
    assert task is not None
    return state, build_request(T, W, outbox, task, {}, (), None)


def _run_with(live: Definitions, state: EngineState, request: TaskRequest) -> ev.TaskFinished:
    report = TaskRuntime(MemoryObjectStore(), live, sink=_Sink()).execute(request)
    state.apply(report.events)
    end = report.events[-1].payload
    assert isinstance(end, ev.TaskFinished)
    return end


def test_a_run_planned_with_retry_retries_though_the_definitions_lost_it() -> None:
    state, request = _planned_and_dispatched(_definitions(POLICY))
    assert request.retry == POLICY
    end = _run_with(_definitions(None), state, request)
    assert (end.outcome, end.retryable) == ("failed", True)
    task = state.task(RUN, "flaky")
    assert task is not None
    assert (task.status, task.max_attempts) == (TaskStatus.RETRY_WAIT, 3)


def test_a_run_planned_without_retry_fails_though_the_definitions_gained_it() -> None:
    state, request = _planned_and_dispatched(_definitions(None))
    assert request.retry is None
    end = _run_with(_definitions(POLICY), state, request)
    assert (end.outcome, end.retryable) == ("failed", False)
    task = state.task(RUN, "flaky")
    assert task is not None
    assert task.status == TaskStatus.FAILED


def test_the_planned_policy_decides_which_error_kinds_retry() -> None:
    never_network = RetryPolicy(max_attempts=3, dont_retry_on=frozenset({ErrorKind.NETWORK}))
    state, request = _planned_and_dispatched(_definitions(never_network))
    assert not _run_with(_definitions(POLICY), state, request).retryable


def _request(retry: RetryPolicy | None) -> TaskRequest:
    return TaskRequest(
        T,
        W,
        RUN,
        "flaky",
        "flaky",
        None,
        2,
        "A2",
        "d",
        "c",
        inputs=(InputRef("up", "values/up.json", "json"),),
        timeout_s=5.0,
        reusable_attempt_ids=("A1",),
        retry=retry,
    )


@pytest.mark.parametrize("retry", [None, POLICY, RetryPolicy()])
def test_the_request_carries_its_policy_through_json_and_pickle(retry: RetryPolicy | None) -> None:
    """JSON for queue backends, pickle for the local process pool."""
    request = _request(retry)
    assert TaskRequest.from_json(request.to_json()) == request
    assert pickle.loads(pickle.dumps(request)) == request
    body = json.loads(request.to_json())
    assert body["retry"] == (None if retry is None else retry.to_dict())


def test_a_request_serialised_before_it_carried_a_policy_still_decodes() -> None:
    body = json.loads(_request(None).to_json())
    del body["retry"]
    assert TaskRequest.from_dict(body) == _request(None)
