"""What one `servo serve` app holds while it runs: started or not, its runtime, its slots.

Made by `create_app`, filled by the app's lifespan (on the event loop, so the thread
limiter belongs to the loop that uses it), read by the routes. Only the event loop
thread touches `in_flight`, so it needs no lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from servo.serve.config import Runtime, ServeConfig


class ServeState:
    """The app's runtime state (see the module docstring)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        #: The lifespan finished starting: the runtime is built, routes may use it.
        self.started = False
        #: The task runtime (worker roles), once started.
        self.runtime: Runtime | None = config.runtime
        #: /execute requests admitted and not yet answered.
        self.in_flight = 0
        #: Worker threads that run attempts: at most `max_concurrency` at once, apart
        #: from the default pool that authentication and probes use.
        self.threads: anyio.CapacityLimiter | None = None

    async def start(self) -> None:
        """Build what the routes need; a runtime factory runs in a thread (it loads code)."""
        self.threads = anyio.CapacityLimiter(self.config.max_concurrency)
        factory = self.config.runtime_factory
        if self.runtime is None and factory is not None:
            self.runtime = await anyio.to_thread.run_sync(factory)
        self.started = True

    def stop(self) -> None:
        """Stop the runtime's background work; requests still running finish first
        (the server drains them before the lifespan ends)."""
        self.started = False
        if self.runtime is not None:
            self.runtime.close()

    def has_capacity(self) -> bool:
        """Whether one more attempt may start now."""
        return self.in_flight < self.config.max_concurrency
