"""The Celery edge's messages (`servo.dispatch.celery_edge`), on a recording app."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from servo.config.settings import CelerySettings
from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.celery_edge import (
    EXECUTE,
    RECONCILE,
    TIMERS,
    CeleryDispatcher,
    CeleryReconcileQueue,
    CeleryTimers,
)
from servo.engine import events as ev
from servo.engine.ids import timer_id
from servo.engine.request import TaskRequest
from servo.errors import ConfigError, TransientStorageError
from servo.executor import Celery
from servo.observability import metrics

SETTINGS = CelerySettings(queue="tasks", reconcile_queue="reconcile", max_eta_s=100.0)


class App:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, list[Any], dict[str, Any]]] = []
        self.error = error

    def send_task(self, name: str, args: list[Any], **options: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((name, args, options))


def _request(**changes: Any) -> TaskRequest:
    request = TaskRequest("t", "w", "r", "a", "a", None, 1, "A1", "d1", "d_abc")
    return dataclasses.replace(request, **changes)


def test_an_attempt_is_sent_under_its_cloud_task_id_to_its_executors_queue() -> None:
    app = App()
    dispatcher = CeleryDispatcher(app, SETTINGS)
    assert dispatcher.enqueue(_request()) == EnqueueOutcome.CREATED
    assert dispatcher.enqueue(_request(executor=Celery(queue="heavy").spec))
    (name, args, options), (_, _, routed) = app.sent
    assert name == EXECUTE and TaskRequest.from_dict(args[0]) == _request()
    assert options == {"queue": "tasks", "task_id": "d_abc"}
    assert routed["queue"] == "heavy"
    with pytest.raises(ConfigError, match="executor cloud_run through Celery"):
        dispatcher.enqueue(_request(executor="cloud_run"))


def test_a_report_carries_its_events_to_the_reconcile_queue() -> None:
    app = App()
    queue = CeleryReconcileQueue(app, SETTINGS)
    finished = ev.Event.new(ev.TaskFinished("succeeded"), tenant_id="t", workspace_id="w",
                            run_id="r", task_key="a", attempt=1, attempt_id="A1",
                            emitted_at=5)  # fmt: skip
    queue.report("t", "w", [finished])
    queue.notify("t", "w", ["ledger/t/w/x"])
    (name, args, options), (_, paths, _) = app.sent
    assert name == RECONCILE and options == {"queue": "reconcile"}
    assert args[:3] == ["t", "w", []] and ev.Event.from_dict(args[3][0]) == finished
    assert paths == ["t", "w", ["ledger/t/w/x"], []]


def test_a_timer_never_counts_down_past_the_longest_eta() -> None:
    app = App()
    now = 1_000_000_000
    timers = CeleryTimers(app, SETTINGS, clock=lambda: now)
    timers.schedule(timer_id("t", "w", "r", "a", 1, "retry"), now + 30_000_000)
    timers.wake("t", "w", now + 10_000_000_000)  # 10,000 s: a hop of 100 s
    (_, first, soon), (name, args, later) = app.sent
    assert name == TIMERS and first == ["t", "w", now + 30_000_000]
    assert soon["countdown"] == pytest.approx(30.0)
    assert later["countdown"] == SETTINGS.max_eta_s and args[2] == now + 10_000_000_000


def test_a_broker_that_refuses_is_a_transient_error_counted() -> None:
    before = metrics.sample("servo_celery_publish_total", {"task": EXECUTE, "outcome": "error"})
    dispatcher = CeleryDispatcher(App(ConnectionError("broker down")), SETTINGS)
    with pytest.raises(TransientStorageError, match=r"cannot send servo\.execute to tasks"):
        dispatcher.enqueue(_request())
    after = metrics.sample("servo_celery_publish_total", {"task": EXECUTE, "outcome": "error"})
    assert after == before + 1
