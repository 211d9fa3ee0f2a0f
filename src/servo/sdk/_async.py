"""``async def`` assets: each attempt awaits the coroutine in a fresh event loop.

`AssetDefinition.call` hands a coroutine to `run_coroutine`, which runs it to its end
in a new event loop (closed afterwards, so nothing leaks from one attempt into the
next) on the calling worker thread. When Servo asks the attempt to stop (the run was
cancelled or the attempt timed out: the context's ``stop_event`` is set), the
coroutine is cancelled at its next ``await``, so it ends promptly instead of running
on after the engine has given up on it; the attempt then ends with
`AttemptStoppedError`, whose result the engine ignores.

A watcher task in the same loop checks the stop event every `STOP_POLL_S` seconds: a
`threading.Event` cannot wake an event loop by itself, and a helper thread blocked on
it could not be released when the attempt ends first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from servo.errors import AttemptStoppedError

T = TypeVar("T")

#: Seconds between two checks of the stop event while a coroutine runs.
STOP_POLL_S = 0.02


async def _cancel_on_stop(task: asyncio.Task[Any], stop_event: threading.Event) -> None:
    while not stop_event.is_set():
        await asyncio.sleep(STOP_POLL_S)
    task.cancel()


async def _await_stoppable(
    coroutine: Coroutine[Any, Any, T], stop_event: threading.Event | None
) -> T:
    task = asyncio.ensure_future(coroutine)
    if stop_event is None:
        return await task
    watcher = asyncio.ensure_future(_cancel_on_stop(task, stop_event))
    try:
        return await task
    finally:
        watcher.cancel()


def run_coroutine(
    coroutine: Coroutine[Any, Any, T], stop_event: threading.Event | None, owner: str
) -> T:
    """Await `coroutine` in a fresh event loop on this thread; return its result.

    Args:
        coroutine: the asset function's coroutine.
        stop_event: when set, the coroutine is cancelled (None: never).
        owner: who runs, for the message (``asset 'x'``).

    Raises:
        AttemptStoppedError: the coroutine was cancelled, because `stop_event` was set
            or by the asset's own code (a `CancelledError` must not escape the worker).
        Exception: whatever the coroutine raised.
    """
    with asyncio.Runner() as runner:
        try:
            return runner.run(_await_stoppable(coroutine, stop_event))
        except asyncio.CancelledError:
            if stop_event is not None and stop_event.is_set():
                raise AttemptStoppedError(
                    f"{owner}: stopped while awaiting its coroutine, because Servo asked the "
                    "attempt to stop (run cancelled or attempt timed out)"
                ) from None
            raise AttemptStoppedError(
                f"{owner}: its coroutine was cancelled by the asset's own code; "
                "catch asyncio.CancelledError inside the asset or let the task finish"
            ) from None
