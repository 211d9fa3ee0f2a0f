"""Ctrl-C and SIGTERM while a run is driven: stop gracefully, then at once.

The first SIGINT or SIGTERM asks the runner to stop (`EmbeddedRunner.request_stop`):
nothing new is dispatched and running assets get a grace period; a second one stops
at once. After that the default handlers are back, so a third Ctrl-C interrupts
whatever is still going on (the ledger already holds everything recorded).

The handler only stores a deadline and writes one line with ``os.write`` (no Python
buffer, nothing that could be re-entered): all the work happens in the runner's loop.
Handlers can only be installed from the main thread; elsewhere the context manager
does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servo.runner import EmbeddedRunner

#: The signals that stop a run gracefully.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):  # stderr closed: the stop goes on without it
        os.write(2, text.encode())


@contextmanager
def graceful_stop(runner: EmbeddedRunner, grace_s: float) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM stop `runner` (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    seen = 0

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handle(signum: int, _frame: FrameType | None) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            runner.request_stop(grace_s)
            _say(
                f"\nstopping ({signal.Signals(signum).name}): no new assets start; running "
                f"ones get {grace_s:g}s to finish (Ctrl-C again to stop now)\n"
            )
        else:
            runner.request_stop(0.0)
            restore()
            _say("\nstopping now\n")

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        restore()
