"""Health probes: liveness, startup, and readiness with one entry per dependency.

- ``/health/live``: 200 while the process serves requests at all.
- ``/health/startup``: 200 once the app started (definitions loaded, runtime built).
- ``/health/ready``, ``/ready``, ``/health``: run the readiness checks and answer
  ``{"status": "ready", "checks": {"storage": {"status": "up", "latency_ms": 1}}}``
  (200), or ``"not_ready"`` with the failing check ``"down"`` (503).

A failing check reports only the exception's TYPE name in ``error``: a message may
hold a URL with a password, a bucket path or a token, and probes are unauthenticated.
Each check runs in a thread with a timeout; one that hangs is abandoned (Python
threads cannot be killed) and, while its thread still runs, reported down without
starting another, so a hung dependency never piles up threads. Results are reused for
``readiness_cache_s``, and concurrent probes share one run, so the probe rate never
becomes the dependency's request rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.serve.config import ReadinessCheck
from servo.serve.state import ServeState

log = get_logger(__name__)

CHECKS_DOWN = metrics.counter(
    "servo_readiness_check_failures_total",
    "Readiness checks that failed or timed out, by check and error type.",
    ["check", "error_type"],
)


class Readiness:
    """Runs the readiness checks (see the module docstring)."""

    def __init__(
        self,
        checks: Mapping[str, ReadinessCheck],
        *,
        timeout_s: float,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._lock = anyio.Lock()
        self._cached: tuple[float, bool, dict[str, dict[str, Any]]] | None = None
        self._still_running: dict[str, threading.Event] = {}

    async def report(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Whether every check is up, and each check's entry."""
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1], self._cached[2]
            results: dict[str, dict[str, Any]] = {}
            async with anyio.create_task_group() as group:
                for name, check in self._checks.items():
                    group.start_soon(self._run, name, check, results)
            ordered = {name: results[name] for name in self._checks}
            ready = all(entry["status"] == "up" for entry in ordered.values())
            self._cached = (self._clock(), ready, ordered)
            return ready, ordered

    async def _run(
        self, name: str, check: ReadinessCheck, results: dict[str, dict[str, Any]]
    ) -> None:
        running = self._still_running.get(name)
        if running is not None and not running.is_set():  # the last run still hangs
            results[name] = self._down(name, "TimeoutError", self._timeout_s)
            return
        done = threading.Event()
        self._still_running[name] = done

        def call() -> None:
            try:
                check()
            finally:
                done.set()

        started = time.perf_counter()
        try:
            with anyio.fail_after(self._timeout_s):
                await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except Exception as exc:  # a check may raise anything; only its type is reported
            error_type = "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__
            results[name] = self._down(name, error_type, time.perf_counter() - started)
            return
        results[name] = {"status": "up", "latency_ms": _ms(time.perf_counter() - started)}

    def _down(self, name: str, error_type: str, elapsed_s: float) -> dict[str, Any]:
        CHECKS_DOWN.labels(name, error_type).inc()
        log.warning("serve.readiness_check_down", check=name, error_type=error_type)
        return {"status": "down", "latency_ms": _ms(elapsed_s), "error": error_type}


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Probes:
    """The probe endpoints of one app."""

    def __init__(self, state: ServeState, readiness: Readiness) -> None:
        self._state = state
        self._readiness = readiness

    async def live(self, request: Request) -> Response:
        """200 while the process answers at all."""
        return JSONResponse({"status": "alive"})

    async def startup(self, request: Request) -> Response:
        """200 once the app started, else 503."""
        if self._state.started:
            return JSONResponse({"status": "started"})
        return JSONResponse({"status": "starting"}, status_code=503)

    async def ready(self, request: Request) -> Response:
        """Readiness: every check up (200) or not (503)."""
        return await self._answer()

    async def health(self, request: Request) -> Response:
        """Readiness plus the role and code version (what Cloud Run and humans read)."""
        config = self._state.config
        return await self._answer(role=config.role, version=dict(config.version))

    async def _answer(self, **extra: Any) -> Response:
        ready, checks = await self._readiness.report()
        if not self._state.started:
            ready = False
            checks = {**checks, "startup": {"status": "down", "latency_ms": 0, "error": "Starting"}}
        body = {"status": "ready" if ready else "not_ready", "checks": checks, **extra}
        return JSONResponse(body, status_code=200 if ready else 503)
