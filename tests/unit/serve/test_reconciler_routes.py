"""The reconciler's /internal/* routes over a real `ReconcilerService` (memory store):
bodies are validated, steps run, failures ask the queue to deliver again, hops re-arm."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from servo.engine import events as ev
from servo.engine import schema as s
from servo.errors import TransientStorageError
from servo.resilience.rate_limit import RateLimitConfig, RateLimiter, open_storage
from servo.runner.remote import RunFollower, submit_run
from servo.runner.service import ReconcilerService
from servo.serve.app import create_app
from servo.serve.auth import SIGNATURE_HEADER, Authenticator, sign_hmac
from servo.serve.auth_hmac import HmacVerifier
from servo.serve.config import ServeConfig
from servo.serve.reconciler import reconciler_handlers
from servo.storage.memory import MemoryObjectStore
from servo.worker.notify import NotifyingSink
from servo.worker.runtime import LedgerSink, TaskRuntime
from tests.unit.runner.test_workspace import DEFS, Clock, Queue, Timers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SECRET = "reconciler-secret-0123456789abcdef"


class World:
    def __init__(self) -> None:
        self.store = MemoryObjectStore()
        self.clock = Clock()
        self.queue, self.timers = Queue(), Timers()
        self.rearmed: list[tuple[str, str, int]] = []
        self.service = ReconcilerService(
            self.store, DEFS, self.queue, self.timers, clock=self.clock
        )
        config = ServeConfig(
            role="reconciler",
            authenticator=Authenticator(
                hmac=HmacVerifier(SECRET, 300.0, clock=lambda: self.clock.now / 1e6)
            ),
            rate_limiter=RateLimiter(open_storage("memory://"), RateLimitConfig()),
            internal_handlers=reconciler_handlers(self.service, self.rearm, clock=self.clock),
        )
        self.client = TestClient(create_app(config))

    def rearm(self, tenant: str, workspace: str, due_at: int) -> None:
        self.rearmed.append((tenant, workspace, due_at))

    def post(self, route: str, body: Any, *, signed: bool = True) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if signed:
            headers[SIGNATURE_HEADER] = sign_hmac(SECRET, data, self.clock.now / 1e6)
        return self.client.post(f"/internal/{route}", content=data, headers=headers)


@pytest.fixture
def world() -> Iterator[World]:
    found = World()
    with found.client:
        yield found


def test_reports_posted_to_reconcile_drive_a_diamond_to_its_end(world: World) -> None:
    runtime = TaskRuntime(world.store, DEFS, worker_id="w", clock=world.clock)

    def notify(tenant: str, workspace: str, paths: Any) -> None:
        body = {"tenant_id": tenant, "workspace_id": workspace, "paths": list(paths)}
        answer = world.post("reconcile", body)
        assert answer.status_code == 200, answer.text

    submitted = submit_run(world.store, DEFS, notify, tenant_id="default", workspace_id="default")
    for _ in range(6):
        for request in world.queue.take():
            notify(request.tenant_id, request.workspace_id, runtime.execute(request).paths)
    run, _ = RunFollower(world.store, "default", "default", submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED


def test_reports_that_carry_their_events_drive_a_diamond_to_its_end(world: World) -> None:
    """A worker's report may carry its events instead of naming ledger objects; the
    step writes them (ADR 0025)."""

    def report(tenant: str, workspace: str, events: Any) -> None:
        body = {"tenant_id": tenant, "workspace_id": workspace, "paths": [],
                "events": [e.to_dict() for e in events]}  # fmt: skip
        answer = world.post("reconcile", body)
        assert answer.status_code == 200, answer.text

    def notify(tenant: str, workspace: str, paths: Any) -> None:
        answer = world.post("reconcile", {"tenant_id": tenant, "workspace_id": workspace,
                                          "paths": list(paths)})  # fmt: skip
        assert answer.status_code == 200, answer.text

    sink = NotifyingSink(world.store, notify, report, hold_s=60.0)
    runtime = TaskRuntime(world.store, DEFS, worker_id="w", clock=world.clock, sink=sink)
    submitted = submit_run(world.store, DEFS, notify, tenant_id="default", workspace_id="default")
    for _ in range(6):
        for request in world.queue.take():
            assert runtime.execute(request).paths == []
    sink.close()
    run, _ = RunFollower(world.store, "default", "default", submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED


def _event(tenant: str, payload: ev.Payload) -> dict[str, Any]:
    return ev.Event.new(
        payload, tenant_id=tenant, workspace_id="b", run_id="r", task_key="k", attempt=1,
        attempt_id="a1", emitted_at=1,
    ).to_dict()  # fmt: skip


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event("c", ev.TaskHeartbeat()), "must belong to a/b"),
        (_event("a", ev.DispatchEnqueued()), "must be one of"),
    ],
)
def test_a_report_may_carry_only_worker_events_of_its_own_workspace(
    world: World, event: dict[str, Any], reason: str
) -> None:
    body = {"tenant_id": "a", "workspace_id": "b", "paths": [], "events": [event]}
    answer = world.post("reconcile", body)
    assert answer.status_code == 400
    (detail,) = answer.json()["details"]
    assert detail["field"] == "events[0]" and reason in detail["message"]
    assert world.queue.take() == []


def test_an_unsigned_request_never_reaches_the_step(world: World) -> None:
    answer = world.post("sweep", {}, signed=False)
    assert answer.status_code == 401
    assert world.queue.take() == []


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("reconcile", {"tenant_id": "a", "workspace_id": "b", "paths": []}, "paths"),
        ("reconcile", {"tenant_id": "a/..", "workspace_id": "b", "paths": ["x"]}, "tenant_id"),
        ("reconcile", {"tenant_id": "a", "workspace_id": "b", "paths": ["ledger/c/b/x"]},
         "paths[0]"),
        ("reconcile", {"tenant_id": "a", "workspace_id": "b", "paths": [], "events": []},
         "paths"),
        ("reconcile", {"tenant_id": "a", "workspace_id": "b", "paths": [], "events": [7]},
         "events[0]"),
        ("reconcile", {"tenant_id": "a", "workspace_id": "b", "paths": [], "events": {}},
         "events"),
        ("reconcile", {"tenant_id": "a", "workspace_id": "b", "paths": [],
                       "events": [{"type": "TaskFinished"}]}, "events[0]"),
        ("timers", {"tenant_id": "a", "due_at": 5}, "workspace_id"),
        ("timers", {"tenant_id": "a", "workspace_id": "b", "due_at": "soon"}, "due_at"),
        ("sweep", {"workspaces": [{"tenant_id": "a"}]}, "workspaces[0].workspace_id"),
        ("sweep", b"{not json", "body"),
    ],
)  # fmt: skip
def test_a_bad_body_is_a_validation_error_naming_the_field(
    world: World, route: str, body: Any, field: str
) -> None:
    answer = world.post(route, body)
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["error"] == "validation_error"
    assert field in [d["field"] for d in payload["details"]]


def test_a_failed_step_answers_503_so_the_queue_delivers_it_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted = submit_run(world.store, DEFS, lambda *_: None, tenant_id="t", workspace_id="w")
    body = {"tenant_id": "t", "workspace_id": "w", "paths": [submitted.path]}

    def refuse(*_: object, **__: object) -> int:
        raise TransientStorageError("store unavailable at http://user:pw@host")

    real = world.store.put_if_absent
    monkeypatch.setattr(world.store, "put_if_absent", refuse)
    answer = world.post("reconcile", body)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert "pw" not in answer.text, "no dependency message in the answer"
    monkeypatch.setattr(world.store, "put_if_absent", real)
    world.clock.now += 1_000_000  # the queue retries later (a signature is good once)
    assert world.post("reconcile", body).status_code == 200
    assert [r.asset_key for r in world.queue.take()] == ["root"]


def test_a_wake_up_delivered_long_before_its_due_time_is_armed_again(world: World) -> None:
    due = world.clock.now + 3_600_000_000
    answer = world.post("timers", {"tenant_id": "t", "workspace_id": "w", "due_at": due})
    assert answer.status_code == 200 and answer.json() == {"rearmed": True, "due_at": due}
    assert world.rearmed == [("t", "w", due)]


def test_a_wake_up_fires_every_due_timer_of_its_workspace(world: World) -> None:
    submitted = submit_run(world.store, DEFS, lambda *_: None, tenant_id="t", workspace_id="w")
    body = {"tenant_id": "t", "workspace_id": "w", "paths": [submitted.path]}
    assert world.post("reconcile", body).status_code == 200
    (request,) = world.queue.take()
    started = LedgerSink(world.store).emit(_started(request, world.clock()))
    world.clock.now += 1_000_000
    body["paths"] = [started]
    assert world.post("reconcile", body).status_code == 200
    assert world.timers.armed, "the started attempt's heartbeat check is armed"
    due = max(world.timers.armed.values())
    world.clock.now = due + 10_000_000  # long past due, and past the report lag
    answer = world.post("timers", {"tenant_id": "t", "workspace_id": "w", "due_at": due})
    assert answer.status_code == 200, answer.text
    assert [r.attempt for r in world.queue.take()] == [2], "the silent attempt is redone"


def _started(request: Any, at: int) -> Any:
    return ev.Event.new(
        ev.TaskStarted(worker_id="w"),
        tenant_id=request.tenant_id,
        workspace_id=request.workspace_id,
        run_id=request.run_id,
        task_key=request.task_key,
        attempt=request.attempt,
        attempt_id=request.attempt_id,
        emitted_at=at,
    )


def test_a_sweep_of_every_registered_workspace_reports_each(world: World) -> None:
    submit_run(world.store, DEFS, lambda *_: None, tenant_id="t1", workspace_id="w")
    submit_run(world.store, DEFS, lambda *_: None, tenant_id="t2", workspace_id="w")
    answer = world.post("sweep", {})
    assert answer.status_code == 200
    swept = answer.json()["workspaces"]
    assert [(w["tenant_id"], w["enqueued"]) for w in swept] == [("t1", 1), ("t2", 1)]
    only = world.post("sweep", {"workspaces": [{"tenant_id": "t1", "workspace_id": "w"}]})
    assert [w["tenant_id"] for w in only.json()["workspaces"]] == ["t1"]
