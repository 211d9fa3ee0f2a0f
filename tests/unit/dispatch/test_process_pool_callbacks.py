"""The process pool dispatcher holds no lock while a completion callback runs."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from servo.dispatch.local import LocalPoolDispatcher, ProcessRuntimeSpec
from servo.engine.request import TaskRequest
from servo.storage.memory import MemoryObjectStore


class _FinishedAtOnce:
    """A pool whose futures are done before `submit` returns (a pool that just broke,
    or an attempt that finished instantly): `add_done_callback` runs inline."""

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(RuntimeError("the manager is gone"))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None


def request(n: int) -> TaskRequest:
    return TaskRequest("t", "w", "r", f"k{n}", "a", None, 1, f"A{n}", f"d{n}", f"c{n}")


def test_an_attempt_that_ends_inside_submit_does_not_deadlock_enqueue(tmp_path: Path) -> None:
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
    generation.executor = _FinishedAtOnce()  # type: ignore[assignment]
    try:
        worker = threading.Thread(
            target=lambda: [dispatcher.enqueue(request(n)) for n in (1, 2)], daemon=True
        )
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "enqueue hung: a lock was held across the callback"
        assert ended == [("A1", "RuntimeError"), ("A2", "RuntimeError")]
        assert dispatcher.pending == 0
    finally:
        dispatcher.close(0)
