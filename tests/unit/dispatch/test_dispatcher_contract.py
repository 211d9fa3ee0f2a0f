"""The dispatcher contract (`contract.py`) against every dispatcher Servo has."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from servo.dispatch.local import LocalPoolDispatcher, ProcessRuntimeSpec
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore
from servo.testing.dispatchers import QueueDispatcher
from servo.worker.runtime import TaskRuntime

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
