"""Celery does not deduplicate: with every message sent twice, runs still end with
the right values and one recorded success per task.

The worker runs in this process on Celery's in-memory broker (the RabbitMQ edge is
tested end to end in `tests/e2e/test_celery.py`); the app's ``send_task`` sends each
dispatch, report, submission and timer twice.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servo.config.settings import load_settings
from servo.dispatch.celery_edge import EXECUTE, CeleryReconcileQueue
from servo.engine import schema as s
from servo.engine.derive import current_attempts
from servo.engine.request import TaskRequest
from servo.engine.snapshot import SnapshotReader
from servo.observability import metrics
from servo.runner.remote import RunFollower, submit_run
from servo.sdk.io import read_value
from servo.sdk.loader import load_definitions
from servo.serve.celery_worker import attempt_ended, worker_app
from servo.storage.local import LocalObjectStore

# The suite runs as root on CI machines; Celery warns about that, rightly, but here
# the worker is a thread of the test process.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::celery.exceptions.SecurityWarning"),
]

DEFINITIONS = """
from servo import RetryPolicy, asset

@asset
def root() -> int:
    return 1

@asset
def left(root: int) -> int:
    return root + 1

@asset
def right(root: int) -> int:
    return root * 10

@asset
def tip(left: int, right: int) -> int:
    return left + right

@asset
def broken() -> int:
    raise ValueError("broken on purpose")

@asset
def after_broken(broken: int) -> int:
    return broken + 1
"""


class Doubled:
    """The worker app of a test, every message it sends sent twice."""

    def __init__(self, folder: Path) -> None:
        (folder / "defs.py").write_text(DEFINITIONS, encoding="utf-8")
        environ = {"SERVO_CLOUD_PROVIDER": "celery", "SERVO_HOME": str(folder / "home"),
                   "SERVO_CLOUD_CELERY_BROKER_URL": "memory://"}  # fmt: skip
        self.settings = load_settings(None, environ=environ)
        self.defs = load_definitions(str(folder / "defs.py"))
        self.store = LocalObjectStore(folder / "home", fsync=False)
        self.app = worker_app(self.settings, self.defs, self.store)
        self.app.conf.broker_transport_options = {"polling_interval": 0.01}
        self.sent = 0
        send = self.app.send_task

        def twice(*args: Any, **options: Any) -> Any:
            self.sent += 2
            send(*args, **options)
            return send(*args, **options)

        self.app.send_task = twice
        celery = self.settings.cloud.celery
        self.worker = self.app.Worker(
            pool="threads", concurrency=4, queues=[celery.queue, celery.reconcile_queue],
            without_heartbeat=True, without_mingle=True, without_gossip=True,
            hostname="doubled@test", loglevel="WARNING",
        )  # fmt: skip
        self.thread = threading.Thread(target=self.worker.start, daemon=True)
        self.thread.start()
        self.queue = CeleryReconcileQueue(self.app, celery)

    def run(self, selection: str) -> tuple[s.RunRow, list[s.TaskRow]]:
        submitted = submit_run(self.store, self.defs, self.queue.notify, tenant_id="default",
                               workspace_id="default", selection=selection)  # fmt: skip
        follower = RunFollower(self.store, "default", "default", submitted.run_id)
        run = follower.wait(timeout_s=60, poll_s=0.05)
        assert run is not None
        return run, follower.poll()[1]

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(10)
        self.app.servo_runtime.close()


@pytest.fixture(scope="module")
def doubled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doubled]:
    started = Doubled(tmp_path_factory.mktemp("doubled"))
    try:
        yield started
    finally:
        started.stop()


def _succeeded_attempts(store: LocalObjectStore, run_id: str) -> dict[str, int]:
    snapshot = SnapshotReader(store, "default", "default").load()
    attempts: dict[str, list[s.AttemptRow]] = {}
    for row in snapshot.rows("attempts"):
        if row.run_id == run_id:
            attempts.setdefault(row.task_key, []).append(row)
    return {
        key: sum(a.outcome == "succeeded" for a in current_attempts(rows).values())
        for key, rows in attempts.items()
    }


def test_every_message_twice_still_gives_the_right_values_once(doubled: Doubled) -> None:
    started = time.monotonic()
    run, tasks = doubled.run("+tip")
    assert run.status == s.RUN_SUCCEEDED, tasks
    values = {t.asset_key: read_value(doubled.store, t.output_location, t.output_format)
              for t in tasks if t.output_location and t.output_format}  # fmt: skip
    assert values == {"root": 1, "left": 2, "right": 10, "tip": 12}
    assert _succeeded_attempts(doubled.store, run.run_id) == dict.fromkeys(values, 1)
    assert all(t.attempt == 1 for t in tasks), "a duplicate is not a new attempt"
    assert doubled.sent >= 2 * 9, "dispatches and reports were all doubled"
    assert time.monotonic() - started < 60


def test_a_failure_with_doubled_messages_skips_only_its_downstream(doubled: Doubled) -> None:
    run, tasks = doubled.run("broken+")
    assert run.status == s.RUN_FAILED
    assert {t.asset_key: t.status for t in tasks} == {
        "broken": s.FAILED, "after_broken": s.SKIPPED
    }  # fmt: skip


def test_a_redelivered_message_of_an_ended_attempt_is_dropped_not_run(doubled: Doubled) -> None:
    """The poison-loop guard: once the engine ended an attempt, a message delivered
    again for it is acknowledged without running; a first delivery still reuses."""
    run, tasks = doubled.run("root")
    (root,) = tasks
    assert run.status == s.RUN_SUCCEEDED and root.attempt_id is not None
    request = TaskRequest("default", "default", run.run_id, root.task_key, root.asset_key,
                          None, root.attempt, root.attempt_id, "d", "c")  # fmt: skip
    assert attempt_ended(doubled.store, request)
    fresh = dataclasses.replace(request, run_id="not-published-yet")
    assert not attempt_ended(doubled.store, fresh), "what is not published is not judged"
    execute = doubled.app.tasks[EXECUTE]
    before = metrics.sample("servo_celery_ended_attempts_dropped_total")
    assert execute.apply(args=[request.to_dict()], retries=1).result == "ended"
    assert metrics.sample("servo_celery_ended_attempts_dropped_total") == before + 1
    assert execute.apply(args=[request.to_dict()]).result == "reused"
