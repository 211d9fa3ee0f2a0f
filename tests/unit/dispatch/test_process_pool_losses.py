"""A lost process pool ends every attempt it held, naming the one whose worker died."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

from servo.dispatch.local import LocalPoolDispatcher, ProcessRuntimeSpec
from servo.dispatch.process_pool import _Generation, _loss_error
from servo.engine.request import TaskRequest
from servo.errors import PoolLostError, WorkerCrashedError
from servo.storage.memory import MemoryObjectStore


def request(n: int) -> TaskRequest:
    return TaskRequest("t", "w", "r", f"k{n}", "a", None, 1, f"A{n}", f"d{n}", f"c{n}")


def test_the_crashed_attempt_is_named_with_its_exit_code_or_signal() -> None:
    crashed = _loss_error(request(1), "worker_died", 10, {10: 1})
    assert isinstance(crashed, WorkerCrashedError)
    assert str(crashed) == "worker process exited with code 1 while running k1"
    killed = _loss_error(request(1), "worker_died", 10, {10: -9})
    assert str(killed) == "worker process was killed by signal 9 while running k1"
    for pid, cause in ((11, "worker_died"), (None, "worker_died"), (10, "manager_died")):
        codes = {10: 1} if cause == "worker_died" else {}
        assert isinstance(_loss_error(request(1), cause, pid, codes), PoolLostError)


class _TornDownDuringSubmit:
    """A pool whose generation is lost, and its teardown done, while `submit` runs."""

    def __init__(self, generation: _Generation) -> None:
        self.generation = generation

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        self.generation.lost = self.generation.reaped = True
        return Future()  # never ends: its executor is gone

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None


def test_an_attempt_submitted_while_its_pool_was_torn_down_still_ends(tmp_path: Path) -> None:
    ended: list[tuple[str, str]] = []
    spec = ProcessRuntimeSpec(str(tmp_path / "defs.py"), MemoryObjectStore)
    dispatcher = LocalPoolDispatcher(
        None,
        lambda req, result: ended.append((req.attempt_id, type(result).__name__)),
        mode="process",
        process_spec=spec,
        close_timeout_s=0.5,
    )
    pool = dispatcher._processes
    assert pool is not None
    generation = pool._generation_for()
    generation.executor.shutdown(wait=False)
    generation.executor = _TornDownDuringSubmit(generation)  # type: ignore[assignment]
    try:
        dispatcher.enqueue(request(1))
        assert ended == [("A1", "PoolLostError")]
        assert dispatcher.pending == 0
    finally:
        dispatcher.close(0)


class _QueuedForever:
    """A pool that never starts what it is given; its shutdown cancels it all."""

    def __init__(self) -> None:
        self.futures: list[Future[Any]] = []

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        self.futures.append(Future())
        return self.futures[-1]

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        for future in self.futures if cancel_futures else []:
            future.cancel()


def test_attempts_waiting_in_a_lost_pool_are_lost_with_it_not_held(tmp_path: Path) -> None:
    ended: list[tuple[str, str]] = []
    spec = ProcessRuntimeSpec(str(tmp_path / "defs.py"), MemoryObjectStore)
    dispatcher = LocalPoolDispatcher(
        None,
        lambda req, result: ended.append((req.attempt_id, type(result).__name__)),
        mode="process",
        process_spec=spec,
        close_timeout_s=0.5,
    )
    pool = dispatcher._processes
    assert pool is not None
    generation = pool._generation_for()
    generation.executor.shutdown(wait=False)
    generation.executor = _QueuedForever()  # type: ignore[assignment]
    try:
        dispatcher.enqueue(request(1))
        pool._lose(generation, "manager_died")
        for reaper in pool._reapers:
            reaper.join(10)
        # NotStarted would mean "held for a resume": nothing would redeliver it now
        assert ended == [("A1", "PoolLostError")]
    finally:
        dispatcher.close(0)
