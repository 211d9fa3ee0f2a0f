"""The Celery edge end to end on the machine's RabbitMQ: a real ``servo celery worker``
process consumes the queues, the real ``servo materialize`` submits and follows.

CI starts RabbitMQ (`.ci/run`); locally the tests are skipped when none answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from servo.runner.remote import RunFollower
from servo.sdk.io import read_value
from servo.storage.local import LocalObjectStore

from ._cli import COMMAND, run, write

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BROKER = "amqp://guest:guest@127.0.0.1:5672//"

DEFINITIONS = """
from servo import asset


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


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


class Stack:
    """A worker process and the environment a client shares with it."""

    def __init__(self, folder: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.folder = folder
        self.defs = write(folder / "defs.py", DEFINITIONS)
        self.env = {
            "SERVO_CLOUD_PROVIDER": "celery",
            "SERVO_CLOUD_CELERY_BROKER_URL": BROKER,
            "SERVO_CLOUD_CELERY_QUEUE": f"servo-tasks-{suffix}",
            "SERVO_CLOUD_CELERY_RECONCILE_QUEUE": f"servo-reconcile-{suffix}",
            "SERVO_HOME": str(folder / "home"),
            "SERVO_STORAGE_FSYNC": "false",
        }
        self.log = folder / "worker.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
        with self.log.open("wb") as log:
            self.worker = subprocess.Popen(
                [*COMMAND, "celery", "worker", "--defs", str(self.defs), "--concurrency", "4"],
                env={**environ, **self.env, "HOME": str(folder)},
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def materialize(self, *selection: str) -> dict[str, object]:
        result = run("materialize", *selection, "--defs", str(self.defs), "--json",
                     timeout=120, **self.env)  # fmt: skip
        assert result.stdout, result.stderr + self.log.read_text(errors="replace")
        payload: dict[str, object] = json.loads(result.stdout)
        return payload

    def stop(self) -> None:
        self.worker.kill()
        self.worker.wait(10)
        from kombu import Connection

        with Connection(BROKER) as connection:  # leave the broker as it was
            channel = connection.default_channel
            for queue in (self.env["SERVO_CLOUD_CELERY_QUEUE"],
                          self.env["SERVO_CLOUD_CELERY_RECONCILE_QUEUE"]):  # fmt: skip
                channel.queue_delete(queue)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not _rabbitmq_answers():
        if os.environ.get("CI"):
            pytest.fail("no RabbitMQ answers at 127.0.0.1:5672; CI must start one")
        pytest.skip("no RabbitMQ answers at 127.0.0.1:5672")
    started = Stack(tmp_path_factory.mktemp("celery"))
    try:
        yield started
    finally:
        started.stop()


def test_a_diamond_runs_on_celery_workers_with_the_right_values(stack: Stack) -> None:
    payload = stack.materialize("+tip")
    assert payload["status"] == "succeeded", payload
    assert payload["tasks"] == dict.fromkeys(["left", "right", "root", "tip"], "succeeded")
    store = LocalObjectStore(stack.folder / "home", fsync=False)
    _, tasks = RunFollower(store, "default", "default", str(payload["run_id"])).poll()
    values = {t.asset_key: read_value(store, t.output_location, t.output_format)
              for t in tasks if t.output_location and t.output_format}  # fmt: skip
    assert values == {"root": 1, "left": 2, "right": 10, "tip": 12}
    shown = run("runs", "show", str(payload["run_id"]), "--json", **stack.env)
    assert json.loads(shown.stdout)["status"] == "succeeded", "read from the projections"


def test_a_failure_on_celery_skips_only_its_downstream(stack: Stack) -> None:
    payload = stack.materialize("broken+", "root")
    assert payload["status"] == "failed", payload
    assert payload["tasks"] == {
        "broken": "failed", "after_broken": "skipped", "root": "succeeded"
    }  # fmt: skip
