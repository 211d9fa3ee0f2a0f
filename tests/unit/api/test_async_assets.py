"""``async def`` assets: awaited per attempt in a fresh loop, cancelled when stopped."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import servo
from servo import AssetContext, Definitions, RetryPolicy, asset
from servo.engine import schema as s
from servo.errors import AttemptStoppedError
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.asset import definition_of
from servo.storage.local import LocalObjectStore

FAST = RunnerOptions(heartbeat_interval_s=0.1, heartbeat_timeout_s=1.0, sweep_interval_s=0.1)
#: Far longer than any test may take: an attempt still sleeping this long was not stopped.
FOREVER_S = 60.0
#: How long a stopped coroutine may take to end (a generous bound on a loaded machine).
PROMPTLY_S = 5.0


def _context(stop_event: threading.Event) -> AssetContext:
    return AssetContext("run", "asset", None, 1, "attempt", None, stop_event)


@asset
async def source() -> list[int]:
    await asyncio.sleep(0)
    return [1, 2, 3]


@asset
async def doubled(source: list[int]) -> list[int]:
    await asyncio.sleep(0)
    return [2 * n for n in source]


@asset
def total(doubled: list[int]) -> int:
    return sum(doubled)


def test_the_decorator_accepts_async_def_and_infers_dependencies() -> None:
    definition = definition_of(doubled)
    assert definition is not None
    assert definition.dependency_names == ("source",)
    assert asyncio.iscoroutinefunction(doubled)  # the function is returned unchanged


def test_async_assets_run_and_pass_values_in_a_thread_pool() -> None:
    result = servo.materialize([source, doubled, total], concurrency=2)
    assert result.success, result.errors
    assert result.value("doubled") == [2, 4, 6]
    assert result.value("total") == 12


def test_each_call_gets_a_fresh_event_loop_that_is_closed_afterwards() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def remember() -> int:
        loops.append(asyncio.get_running_loop())
        return len(loops)

    definition = definition_of(asset(remember))
    assert definition is not None
    assert [definition.call({}), definition.call({})] == [1, 2]
    assert loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)


def test_a_function_returning_a_coroutine_is_awaited_too() -> None:
    async def body(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    @asset
    def wrapped() -> Coroutine[Any, Any, int]:
        return body(41)

    assert servo.materialize([wrapped]).value("wrapped") == 42


def test_errors_raised_by_a_coroutine_are_recorded_with_their_traceback() -> None:
    @asset
    async def failing() -> int:
        await asyncio.sleep(0)
        raise KeyError("missing")

    error = servo.materialize([failing]).errors["failing"]
    assert error.type == "KeyError"
    assert error.traceback is not None and "in failing" in error.traceback


def _stoppable(started: threading.Event, cancelled: threading.Event) -> Callable[..., Any]:
    async def sleeps_forever(context: AssetContext) -> int:
        started.set()
        try:
            await asyncio.sleep(FOREVER_S)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    return sleeps_forever


def _once_started(started: threading.Event, then: Callable[[], object]) -> None:
    assert started.wait(PROMPTLY_S)
    then()


def test_setting_the_stop_event_cancels_the_coroutine_promptly() -> None:
    started, cancelled, stop = threading.Event(), threading.Event(), threading.Event()
    definition = definition_of(asset(name="sleeper")(_stoppable(started, cancelled)))
    assert definition is not None
    stopper = threading.Thread(target=_once_started, args=(started, stop.set))
    stopper.start()
    began = time.monotonic()
    with pytest.raises(AttemptStoppedError, match="Servo asked the attempt to stop"):
        definition.call({}, _context(stop))
    stopper.join()
    assert cancelled.is_set()
    assert time.monotonic() - began < PROMPTLY_S


def test_a_coroutine_that_cancels_itself_fails_instead_of_escaping_the_worker() -> None:
    @asset
    async def self_cancelling() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(FOREVER_S)
        return 1

    definition = definition_of(self_cancelling)
    assert definition is not None
    with pytest.raises(AttemptStoppedError, match="cancelled by the asset's own code"):
        definition.call({}, _context(threading.Event()))
    error = servo.materialize([self_cancelling]).errors["self_cancelling"]
    assert error.type == "servo.errors.AttemptStoppedError"


def test_a_timed_out_async_attempt_is_cancelled_and_the_asset_fails_with_timeout() -> None:
    started, cancelled = threading.Event(), threading.Event()
    slow = asset(
        name="slow", timeout=0.2, retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=0)
    )(_stoppable(started, cancelled))
    began = time.monotonic()
    result = servo.materialize([slow])
    assert time.monotonic() - began < PROMPTLY_S
    assert result.status("slow") == "failed"
    error = result.errors["slow"]
    assert (error.type, error.attempt, error.traceback) == ("timeout", 2, None)
    assert cancelled.wait(PROMPTLY_S)  # the coroutine saw the cancellation, did not run on


def test_cancelling_the_run_cancels_a_running_coroutine(tmp_path: Path) -> None:
    started, cancelled = threading.Event(), threading.Event()
    waits = asset(name="waits")(_stoppable(started, cancelled))

    @asset
    def after(waits: int) -> int:
        return waits

    store = LocalObjectStore(tmp_path / "home", fsync=False)
    defs = Definitions(assets=[waits, after])
    with EmbeddedRunner(store, defs, FAST) as runner:
        run_id = runner.start_run().run_id
        cancel = functools.partial(runner.cancel, run_id, "user")
        canceller = threading.Thread(target=_once_started, args=(started, cancel))
        canceller.start()
        run = runner.wait(run_id)
        canceller.join()
        statuses = {t.task_key: t.status for t in runner.state.tasks_of(run_id)}
    assert run.status == s.RUN_CANCELLED
    assert statuses == {"waits": s.CANCELLED, "after": s.CANCELLED}
    assert cancelled.wait(PROMPTLY_S)
