"""The Cloud Tasks edges (`servo.dispatch.cloud_tasks`) against the local server.

One local Cloud Tasks server and one loopback receiver serve the module; each test
uses queues of its own. Breaker and error translation tests use a stub client that
raises the official client's exceptions, so they are exact and instant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from google.api_core import exceptions as google
from opentelemetry import trace

from servo.config.settings import (
    CloudRunSettings,
    CloudSettings,
    CloudTasksSettings,
    GcpSettings,
    load_settings,
)
from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.cloud_tasks import (
    HOP_US,
    SECOND_US,
    CloudTasksDispatcher,
    CloudTasksReconcileQueue,
    CloudTasksTimers,
)
from servo.dispatch.cloud_tasks_queue import traceparent
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ids import now_us
from servo.engine.request import TaskRequest, build_request
from servo.errors import CircuitOpenError, ConfigError, TransientStorageError
from servo.executor import CloudRun
from servo.observability import metrics
from servo.resilience.circuit_breaker import BreakerConfig, BreakerState, CircuitBreaker
from servo.resilience.clock import ManualClock
from servo.testing.cloud_tasks import LocalCloudTasks
from tests.unit.engine.strategies import TENANT, WORKSPACE, History, fold
from tests.unit.testing.receiver import Received, Receiver

SA = "servo-tasks@p.iam.gserviceaccount.com"
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_queues = itertools.count()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalCloudTasks]:
    with LocalCloudTasks() as server:
        yield server


@pytest.fixture
def cloud(server: LocalCloudTasks, receiver: Receiver) -> CloudSettings:
    """Settings naming fresh queues (created on the server) of this test."""
    n = next(_queues)
    queues = CloudTasksSettings(
        queue=f"tasks-{n}",
        timer_queue=f"timers-{n}",
        reconcile_queue=f"reconcile-{n}",
        service_account_email=SA,
        emulator_host=server.address,
        timeout_s=5,
    )
    for queue in (queues.queue, queues.timer_queue, queues.reconcile_queue):
        server.ensure_queue(f"projects/p/locations/l/queues/{queue}")
    return CloudSettings(
        provider="gcp",
        gcp=GcpSettings(project="p", region="l"),
        cloud_tasks=queues,
        cloud_run=CloudRunSettings(
            worker_url=receiver.url + "/", reconciler_url=receiver.url + "/reconciler"
        ),
    )


def engine_request(run_id: str = "run1") -> TaskRequest:
    """A request as the engine builds it (cloud_task_id = "d_" + sha256)."""
    history = History(run_id=run_id)
    history.request({"a": []})
    history.dispatch("a")
    state = fold(history.events)
    (row,) = [r for r in state.rows("dispatch_outbox") if r.status == s.OUTBOX_PENDING]
    task = state.task(row.run_id, row.task_key)
    assert task is not None
    return build_request(TENANT, WORKSPACE, row, task, {}, (), None)


def pushes_to(receiver: Receiver, path: str, count: int, timeout_s: float = 10) -> list[Received]:
    """The requests on `path`, once `count` of them arrived."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in list(receiver.received) if r.path == path]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{path}: {len(found)} of {count} pushes arrived"
        time.sleep(0.02)


def test_a_dispatch_is_a_task_named_by_its_cloud_task_id(
    cloud: CloudSettings, receiver: Receiver
) -> None:
    request = engine_request("run-named")
    dispatcher = CloudTasksDispatcher(cloud)
    try:
        assert dispatcher.queue_path == f"projects/p/locations/l/queues/{cloud.cloud_tasks.queue}"
        assert dispatcher.task_name(request) == (
            f"{dispatcher.queue_path}/tasks/{request.cloud_task_id}"
        )
        assert dispatcher.enqueue(request) == EnqueueOutcome.CREATED
        assert dispatcher.stop(request.attempt_id, "cancelled") is False
    finally:
        dispatcher.close()
    (push,) = [p for p in pushes_to(receiver, "/execute", 1) if p.task == request.cloud_task_id]
    assert TaskRequest.from_json(push.body) == request
    assert push.headers["content-type"] == "application/json"
    assert TRACEPARENT.fullmatch(push.headers["traceparent"])
    assert push.headers["x-servo-traceparent"] == push.headers["traceparent"]
    token = push.headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == receiver.url and claims["email"] == SA


def test_a_workflow_executor_picks_its_own_queue_and_worker_service(
    cloud: CloudSettings, server: LocalCloudTasks, receiver: Receiver
) -> None:
    """``executor.CloudRun(queue=..., worker_url=...)`` overrides the settings' queue
    and service for its workflow's tasks; other requests keep the configured ones."""
    own = f"own-{next(_queues)}"
    server.ensure_queue(f"projects/p/locations/l/queues/{own}")
    routed = dataclasses.replace(
        engine_request("run-routed"),
        executor=CloudRun(queue=own, worker_url=receiver.url + "/elsewhere").spec,
    )
    plain = engine_request("run-plain")
    dispatcher = CloudTasksDispatcher(cloud)
    try:
        assert dispatcher.task_name(routed).startswith(f"projects/p/locations/l/queues/{own}/")
        assert dispatcher.enqueue(routed) == EnqueueOutcome.CREATED
        assert dispatcher.enqueue(plain) == EnqueueOutcome.CREATED
        with pytest.raises(ConfigError, match="executor celery"):
            dispatcher.enqueue(dataclasses.replace(plain, executor="celery"))
    finally:
        dispatcher.close()
    (elsewhere,) = pushes_to(receiver, "/elsewhere/execute", 1)
    assert TaskRequest.from_json(elsewhere.body) == routed
    deadline = time.monotonic() + 10
    while not any(p.task == plain.cloud_task_id for p in pushes_to(receiver, "/execute", 1)):
        assert time.monotonic() < deadline, "the plain request went to the configured service"
        time.sleep(0.02)


def test_duplicate_outbox_no_duplicate_cloud_task_in_cloud_tasks(
    cloud: CloudSettings, server: LocalCloudTasks
) -> None:
    """The same pending outbox row dispatched twice creates one Cloud Task."""
    before = server.stats()
    created = metrics.sample("servo_cloud_tasks_enqueue_total", {"outcome": "created"})
    dispatcher = CloudTasksDispatcher(cloud)
    try:
        outcomes = [dispatcher.enqueue(engine_request("run-dup")) for _ in range(2)]
    finally:
        dispatcher.close()
    assert outcomes == [EnqueueOutcome.CREATED, EnqueueOutcome.ALREADY_EXISTS]
    after = server.stats()
    assert after.tasks_created - before.tasks_created == 1
    assert after.already_exists - before.already_exists == 1
    assert metrics.sample("servo_cloud_tasks_enqueue_total", {"outcome": "created"}) == created + 1


class StubClient:
    """Answers create_task with the given exceptions (None: success)."""

    def __init__(self, answers: list[Exception | None]) -> None:
        self.answers = answers
        self.calls = 0

    def create_task(self, **_: Any) -> None:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if answer is not None:
            raise answer


def stub_dispatcher(
    cloud: CloudSettings, answers: list[Exception | None], threshold: int, clock: ManualClock
) -> tuple[CloudTasksDispatcher, StubClient, CircuitBreaker]:
    stub = StubClient(answers)
    breaker = CircuitBreaker(
        "cloud_tasks",
        BreakerConfig(failure_threshold=threshold, half_open_timeout_s=30),
        clock=clock,
    )
    return CloudTasksDispatcher(cloud, breaker=breaker, client=stub), stub, breaker  # type: ignore[arg-type]


def test_transient_errors_raise_and_open_the_breaker(cloud: CloudSettings) -> None:
    clock = ManualClock()
    transient = [
        google.ServiceUnavailable("down"),
        google.DeadlineExceeded("slow"),
        google.ResourceExhausted("quota"),
        google.InternalServerError("oops"),
    ]
    dispatcher, stub, breaker = stub_dispatcher(cloud, [*transient, None], 4, clock)
    request = engine_request("run-transient")
    for error in transient:
        with pytest.raises(TransientStorageError) as raised:
            dispatcher.enqueue(request)
        assert raised.value.__cause__ is error
        assert dispatcher.queue_path in str(raised.value)
        assert request.cloud_task_id in str(raised.value)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(TransientStorageError, match="circuit breaker is open") as raised:
        dispatcher.enqueue(request)
    assert isinstance(raised.value.__cause__, CircuitOpenError)
    assert stub.calls == 4, "an open breaker fails fast, without a call"
    clock.advance(31)
    assert dispatcher.enqueue(request) == EnqueueOutcome.CREATED  # the probe succeeds
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (google.NotFound("no queue"), "gcloud tasks queues create"),
        (google.PermissionDenied("no"), "roles/cloudtasks.enqueuer"),
        (google.InvalidArgument("bad"), "dispatch_deadline_s"),
    ],
)
def test_config_errors_name_the_fix_and_do_not_trip_the_breaker(
    cloud: CloudSettings, error: Exception, fix: str
) -> None:
    dispatcher, stub, breaker = stub_dispatcher(cloud, [error], 2, ManualClock())
    for _ in range(3):
        with pytest.raises(ConfigError, match=re.escape(fix)):
            dispatcher.enqueue(engine_request("run-config"))
    assert stub.calls == 3 and breaker.state is BreakerState.CLOSED


def test_a_missing_queue_on_the_server_is_a_config_error(cloud: CloudSettings) -> None:
    missing = cloud.model_copy(
        update={"cloud_tasks": cloud.cloud_tasks.model_copy(update={"queue": "nowhere"})}
    )
    dispatcher = CloudTasksDispatcher(missing)
    try:
        with pytest.raises(ConfigError, match=r"queues/nowhere.*does not exist"):
            dispatcher.enqueue(engine_request("run-missing"))
    finally:
        dispatcher.close()


def test_an_unreachable_server_is_transient(cloud: CloudSettings) -> None:
    closed = cloud.model_copy(
        update={
            "cloud_tasks": cloud.cloud_tasks.model_copy(
                update={"emulator_host": "127.0.0.1:9", "timeout_s": 2}
            )
        }
    )
    dispatcher = CloudTasksDispatcher(closed)
    try:
        with pytest.raises(TransientStorageError, match=r"ServiceUnavailable|DeadlineExceeded"):
            dispatcher.enqueue(engine_request("run-unreachable"))
    finally:
        dispatcher.close()


def test_missing_settings_are_config_errors_that_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="SERVO_CLOUD_CLOUD_RUN_WORKER_URL"):
        CloudTasksDispatcher(CloudSettings(provider="gcp"))
    no_project = CloudSettings(provider="gcp", cloud_run=CloudRunSettings(worker_url="http://w"))
    with pytest.raises(ConfigError, match="SERVO_CLOUD_GCP_PROJECT"):
        CloudTasksDispatcher(no_project)
    with pytest.raises(ConfigError, match="SERVO_CLOUD_CLOUD_RUN_RECONCILER_URL"):
        CloudTasksTimers(no_project)


def test_from_settings_uses_the_configured_breaker(cloud: CloudSettings) -> None:
    settings = load_settings(
        environ={"SERVO_CB_CLOUD_TASKS_FAILURE_THRESHOLD": "1"}, cloud=cloud.model_dump()
    )
    stub = StubClient([google.ServiceUnavailable("down")])
    dispatcher = CloudTasksDispatcher.from_settings(settings, client=stub)  # type: ignore[arg-type]
    with pytest.raises(TransientStorageError):
        dispatcher.enqueue(engine_request("run-settings"))
    with pytest.raises(TransientStorageError, match="circuit breaker is open"):
        dispatcher.enqueue(engine_request("run-settings"))
    assert stub.calls == 1


def test_timers_share_one_wake_up_per_workspace_and_second_and_hop_beyond_30_days(
    cloud: CloudSettings, server: LocalCloudTasks, receiver: Receiver
) -> None:
    now = (now_us() // SECOND_US) * SECOND_US
    clock = [now]
    timers = CloudTasksTimers(cloud, clock=lambda: clock[0])
    first, second = "timer:t:w:r:a:1:retry", "timer:t:w:r:b:1:heartbeat_check"
    other = "timer:t:elsewhere:r:a:1:retry"

    def wake_name(scope: str, wake: int) -> str:
        return "t_" + hashlib.sha256(f"{scope}:{wake}".encode()).hexdigest()

    try:
        soon = now + 60 * SECOND_US
        assert timers.plan(first, soon - 300_000) == (wake_name("t:w", soon), soon, soon)
        assert timers.plan(second, soon - 1) == (wake_name("t:w", soon), soon, soon), (
            "timers of one workspace due within one second share a wake-up"
        )
        assert timers.plan(other, soon)[0] == wake_name("t:elsewhere", soon)
        assert timers.plan(first, now + 500_000) == (None, now + SECOND_US, now + SECOND_US), (
            "a wake-up due very soon may have run under its name already: unnamed"
        )
        far = now + 100 * 24 * 3600 * SECOND_US
        name, at, wake = timers.plan(first, far)
        assert wake == far and now < at <= now + HOP_US and (far - at) % HOP_US == 0
        assert name is not None and name != wake_name("t:w", far)
        clock[0] += 3600 * SECOND_US
        assert timers.plan(first, far) == (name, at, far), "re-arming is idempotent"
        clock[0] = at  # the hop fired: the next one is a new task
        next_name, next_at, _ = timers.plan(first, far)
        assert next_name != name and next_at == at + HOP_US
        clock[0] = now

        timers.schedule(first, soon - 300_000)
        before = server.stats().already_exists
        timers.schedule(second, soon - 1)  # the same wake-up: nothing to do
        assert server.stats().already_exists == before + 1
        client = server.client()
        try:
            task = client.get_task(name=f"{timers.queue_path}/tasks/{wake_name('t:w', soon)}")
        finally:
            client.transport.close()
        assert task.schedule_time.timestamp() == pytest.approx(soon / 1e6, abs=1e-3)
        assert task.http_request.url == receiver.url + "/reconciler/internal/timers"
        body = {"tenant_id": "t", "workspace_id": "w", "due_at": soon}
        assert json.loads(task.http_request.body) == body

        clock[0] = now_us()
        due = clock[0] + 200_000
        timers.schedule(first, due)
    finally:
        timers.close()
    (push,) = pushes_to(receiver, "/reconciler/internal/timers", 1)
    wake = -(-due // SECOND_US) * SECOND_US
    assert json.loads(push.body) == {"tenant_id": "t", "workspace_id": "w", "due_at": wake}
    assert push.at * 1e6 >= wake - 10_000


def test_reconcile_requests_are_deduplicated_by_key(
    cloud: CloudSettings, receiver: Receiver
) -> None:
    queue = CloudTasksReconcileQueue(cloud)
    try:
        keyed = [queue.enqueue_reconcile("t1", "w1", ["ledger/a"], key="k1") for _ in range(2)]
        assert keyed == [EnqueueOutcome.CREATED, EnqueueOutcome.ALREADY_EXISTS]
        assert queue.enqueue_reconcile("t1", "w1", []) == EnqueueOutcome.CREATED
        assert queue.enqueue_reconcile("t1", "w1", []) == EnqueueOutcome.CREATED
    finally:
        queue.close()
    pushes = pushes_to(receiver, "/reconciler/internal/reconcile", 3)
    bodies = sorted((json.loads(p.body) for p in pushes), key=lambda b: b["paths"])
    assert bodies[-1] == {"tenant_id": "t1", "workspace_id": "w1", "paths": ["ledger/a"]}


def test_a_report_carries_its_events_and_is_named_after_the_last(
    cloud: CloudSettings, receiver: Receiver
) -> None:
    events = [
        ev.Event.new(
            payload,
            tenant_id="t1",
            workspace_id="w1",
            run_id="r",
            task_key="k",
            attempt=1,
            attempt_id="a1",
            emitted_at=at,
        )
        for at, payload in enumerate((ev.TaskStarted(worker_id="w"), ev.TaskFinished("succeeded")))
    ]
    queue = CloudTasksReconcileQueue(cloud)
    try:
        queue.report("t1", "w1", events)
        queue.report("t1", "w1", events)  # sent again: ALREADY_EXISTS, not a second push
    finally:
        queue.close()
    pushes_to(receiver, "/reconciler/internal/reconcile", 1)
    time.sleep(0.2)  # a second push would have arrived by now
    (body,) = [b for p in pushes_to(receiver, "/reconciler/internal/reconcile", 1)
               if "events" in (b := json.loads(p.body))]  # fmt: skip
    assert body["paths"] == []
    assert [ev.Event.from_dict(e) for e in body["events"]] == events


def test_traceparent_follows_the_current_span() -> None:
    context = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        assert traceparent() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    fresh = traceparent()
    assert TRACEPARENT.fullmatch(fresh) and fresh != traceparent()
