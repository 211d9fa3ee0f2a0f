"""The dispatcher contract (`contract.py`) against every dispatcher Servo has."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from servo.config.settings import CloudRunSettings, CloudSettings, CloudTasksSettings, GcpSettings
from servo.dispatch.cloud_tasks import CloudTasksDispatcher
from servo.dispatch.local import LocalPoolDispatcher, ProcessRuntimeSpec
from servo.engine.request import TaskRequest
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore
from servo.testing.cloud_tasks import LocalCloudTasks
from servo.testing.dispatchers import QueueDispatcher
from servo.worker.runtime import TaskReport, TaskRuntime
from tests.unit.testing.receiver import Received, Receiver, Reply

from .contract import DEFINITIONS, DispatcherContract, Ended, wait_for


class _Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.defs_file = tmp_path / "definitions.py"
        self.defs_file.write_text(DEFINITIONS)
        self.ran_log = tmp_path / "ran.log"
        self.root = tmp_path / "home"
        self.store = LocalObjectStore(self.root, fsync=False)
        self.ended = Ended()
        self._closed = False

    def runtime(self) -> TaskRuntime:
        return TaskRuntime(self.store, load_definitions(str(self.defs_file)), worker_id="w-test")

    def settle(self, count: int, timeout_s: float) -> None:
        wait_for(self.ended, count, timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        raise NotImplementedError


class _PoolHarness(_Harness):
    def __init__(self, tmp_path: Path, mode: str) -> None:
        super().__init__(tmp_path)
        if mode == "thread":
            self.dispatcher = LocalPoolDispatcher(self.runtime(), self.ended, concurrency=2)
        else:
            spec = ProcessRuntimeSpec(
                str(self.defs_file), partial(LocalObjectStore, self.root, fsync=False)
            )
            self.dispatcher = LocalPoolDispatcher(
                None,
                self.ended,
                concurrency=2,
                mode="process",
                process_spec=spec,
                on_events=self.ended.on_events,
            )

    def _close(self) -> None:
        self.dispatcher.close()


class _QueueHarness(_Harness):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.dispatcher = QueueDispatcher(self.runtime(), self.ended)

    def settle(self, count: int, timeout_s: float) -> None:
        self.dispatcher.deliver()  # the queue pushes what it holds
        super().settle(count, timeout_s)

    def _close(self) -> None:
        self.dispatcher.close()


class _CloudTasksHarness(_Harness):
    """`CloudTasksDispatcher` -> the local Cloud Tasks server -> a loopback worker
    that runs each pushed request through a real `TaskRuntime`, as ``/execute``
    does."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self._runtime = self.runtime()
        self.receiver = Receiver(self._execute)
        self.server = LocalCloudTasks()
        address = self.server.start()
        self.server.ensure_queue("projects/p/locations/l/queues/servo-tasks")
        cloud = CloudSettings(
            provider="gcp",
            gcp=GcpSettings(project="p", region="l"),
            cloud_tasks=CloudTasksSettings(emulator_host=address),
            cloud_run=CloudRunSettings(worker_url=self.receiver.url),
        )
        self.dispatcher = CloudTasksDispatcher(cloud)

    def _execute(self, received: Received) -> Reply:
        if received.path != "/execute":
            return Reply(404)
        request = TaskRequest.from_json(received.body)
        try:
            result: TaskReport | BaseException = self._runtime.execute(request)
        except Exception as exc:  # the worker's answer is an error: reported as such
            result = exc
        self.ended(request, result)
        return Reply(200)

    def _close(self) -> None:
        self.dispatcher.close()
        self.server.stop()
        self.receiver.close()


class TestThreadPool(DispatcherContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[_Harness]:
        harness = _PoolHarness(tmp_path, "thread")
        yield harness
        harness.close()


class TestProcessPool(DispatcherContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[_Harness]:
        harness = _PoolHarness(tmp_path, "process")
        yield harness
        harness.close()


class TestInMemoryQueue(DispatcherContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[_Harness]:
        harness = _QueueHarness(tmp_path)
        yield harness
        harness.close()


class TestCloudTasks(DispatcherContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[_Harness]:
        harness = _CloudTasksHarness(tmp_path)
        yield harness
        harness.close()
