"""The pusher: one asyncio loop in a thread sends due tasks as HTTP requests.

The loop asks the store for the pushes it may start (`TaskStore.take_due` applies
schedules, rate limits and concurrency), starts each as its own asyncio task, and
sleeps until the next task is due or the store says something changed. One loop
holds any number of pushes in flight without a thread each, and gives every push an
exact total timeout (the dispatch deadline) with `asyncio.wait_for`. The HTTP client
is aiohttp's: its connection pool hands out a kept-alive connection in constant
time, where httpx's checks every pooled connection on each request, which made the
pusher the busiest thread of a wide run.

A push carries the task's headers and body plus what Cloud Tasks adds:
``X-CloudTasks-QueueName``, ``-TaskName``, ``-TaskRetryCount``,
``-TaskExecutionCount``, ``-TaskETA`` (and ``-TaskPreviousResponse`` after a
response), ``User-Agent: Google-Cloud-Tasks``, and ``Authorization: Bearer <ID
token>`` when the task asks for an OIDC token. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from servo.observability.logging import get_logger
from servo.testing.cloud_tasks import names
from servo.testing.cloud_tasks.faults import FaultInjector
from servo.testing.cloud_tasks.oidc import TokenIssuer
from servo.testing.cloud_tasks.push import Dispatch, PushResult
from servo.testing.cloud_tasks.stats import PushRecord
from servo.testing.cloud_tasks.store import TaskStore

log = get_logger(__name__)

_STOP_TIMEOUT_S = 10.0


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class Pusher:
    """Sends the store's due tasks; see the module docstring.

    Args:
        store: where tasks come from and results go.
        issuer: mints the OIDC tokens.
        faults: decides drops, duplicates and delays.
        max_connections: HTTP connections kept at most.
    """

    def __init__(
        self,
        store: TaskStore,
        issuer: TokenIssuer,
        faults: FaultInjector,
        max_connections: int = 200,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._faults = faults
        self._max_connections = max_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the loop's thread and wait until it is ready."""
        self._stopping = False
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._run, name="servo-cloud-tasks-push", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=_STOP_TIMEOUT_S):
            raise RuntimeError("the Cloud Tasks pusher did not start")

    def wake(self) -> None:
        """Look for due tasks now (thread-safe)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        """Stop: cancel pushes in flight, close connections, end the thread."""
        self._stopping = True
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=_STOP_TIMEOUT_S)
            self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        # No client-wide timeout: `_send` bounds each push by its dispatch deadline.
        unbounded = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(
            connector=connector, timeout=unbounded, auto_decompress=False
        ) as client:
            self._wake = asyncio.Event()
            self._loop = loop
            self._ready.set()
            while not self._stopping:
                try:
                    due, wake_at = self._store.take_due()
                except Exception:  # a bug must not silently end every push
                    log.exception("cloud_tasks_server.take_due_failed")
                    due, wake_at = [], time.time() + 1.0
                for dispatch in due:
                    self._spawn(self._push(client, dispatch))
                timeout = None if wake_at is None else max(0.0, wake_at - time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
            running = list(self._running)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _push(self, client: aiohttp.ClientSession, dispatch: Dispatch) -> None:
        """Send one push (or lose, copy or delay it) and report how it ended."""
        plan = self._faults.plan()
        result: PushResult | None = None  # None: dropped, the task counts as delivered
        try:
            if plan.delay_s:
                self._store.count_fault(delayed=True)
                await asyncio.sleep(plan.delay_s)
            if plan.drop:
                self._store.record(self._record(dispatch, "dropped"))
                return
            if plan.duplicate:
                self._store.count_fault(duplicated=True)
                self._store.side_push(started=True)
                self._spawn(self._copy(client, dispatch))
            result = PushResult("error")  # if sending fails unexpectedly: retried
            result = await self._send(client, dispatch, duplicate=False)
        finally:
            if not self._stopping:
                self._store.finish(dispatch, result)

    async def _copy(self, client: aiohttp.ClientSession, dispatch: Dispatch) -> None:
        try:
            await self._send(client, dispatch, duplicate=True)
        finally:
            self._store.side_push(started=False)

    async def _send(
        self, client: aiohttp.ClientSession, dispatch: Dispatch, duplicate: bool
    ) -> PushResult:
        record_at = time.time()
        try:
            headers = self._headers(dispatch)
            status, retry_after = await asyncio.wait_for(
                _request(client, dispatch, headers), dispatch.deadline_s
            )
        except TimeoutError:
            result = PushResult("timeout")
        except Exception as exc:  # refused, reset, bad URL or header: failed, retried
            log.debug("cloud_tasks_server.push_failed", task=dispatch.task, error=repr(exc))
            result = PushResult("error")
        else:
            result = PushResult(str(status), status, retry_after_s(retry_after, time.time()))
        self._store.record(self._record(dispatch, result.outcome, record_at, duplicate))
        return result

    def _headers(self, dispatch: Dispatch) -> dict[str, str]:
        headers = {k: v for k, v in dispatch.headers if k.lower() not in ("host", "content-length")}
        if dispatch.body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        headers.update(
            {
                "User-Agent": "Google-Cloud-Tasks",
                "X-CloudTasks-QueueName": names.short(dispatch.queue),
                "X-CloudTasks-TaskName": names.short(dispatch.task),
                "X-CloudTasks-TaskRetryCount": str(dispatch.retry_count),
                "X-CloudTasks-TaskExecutionCount": str(dispatch.execution_count),
                "X-CloudTasks-TaskETA": f"{dispatch.eta:.6f}",
            }
        )
        if dispatch.previous_response is not None:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(dispatch.previous_response)
        if dispatch.oidc_email:
            audience = dispatch.oidc_audience or dispatch.url
            token = self._issuer.token_for(dispatch.oidc_email, audience)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @staticmethod
    def _record(
        dispatch: Dispatch, outcome: str, at: float | None = None, duplicate: bool = False
    ) -> PushRecord:
        return PushRecord(
            queue=dispatch.queue,
            task=dispatch.task,
            url=dispatch.url,
            retry_count=dispatch.retry_count,
            sent_at=time.time() if at is None else at,
            outcome=outcome,
            duplicate=duplicate,
        )


async def _request(
    client: aiohttp.ClientSession, dispatch: Dispatch, headers: dict[str, str]
) -> tuple[int, str | None]:
    """Send one push; its status and ``Retry-After`` (the body is read and dropped)."""
    async with client.request(
        dispatch.method,
        dispatch.url,
        headers=headers,
        data=dispatch.body,
        allow_redirects=False,
    ) as response:
        await response.read()
        return response.status, response.headers.get("retry-after")
