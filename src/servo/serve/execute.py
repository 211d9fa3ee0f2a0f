"""``POST /execute``: one Cloud Tasks (or HMAC-signed) push runs one task attempt.

The order is the contract (SPEC §5, §6), cheapest refusal first:

1. authenticate (401 ``unauthenticated``; 503 when the issuer's keys are unreachable);
2. per-tenant rate limit, keyed by the body's ``tenant_id`` (429, ``Retry-After: 1``);
3. validate the body as a `TaskRequest` (400, SPEC §9's ``validation_error``);
4. capacity: at ``max_concurrency`` attempts running, 503 with Retry-After;
5. run the attempt in a worker thread and answer 200
   ``{"attempt_id", "outcome", "reused"}``: the outcome, failed or not, is in the
   ledger, so Cloud Tasks must not retry it.

Authentication needs the body (HMAC signs it), so the body is read first, bounded by
the route's size limit. Authentication and the rate limit run in the default thread
pool (an OIDC key fetch or a Redis limiter does network I/O); attempts run in threads
of their own, never more than ``max_concurrency``. An attempt the runtime could not
report (a ledger write failed) or a failing `ServeConfig.on_report` answers 500: Cloud
Tasks retries, and the retry reuses the recorded result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from servo.engine import events as ev
from servo.engine.request import TaskRequest
from servo.observability import metrics, tracecontext
from servo.observability.logging import get_logger
from servo.serve import responses
from servo.serve.auth import AuthError, AuthUnavailable
from servo.serve.state import ServeState
from servo.serve.validation import RequestInvalid, parse_body, tenant_hint, validate_task_request
from servo.worker.runtime import TaskReport

log = get_logger(__name__)

#: Retry-After when the issuer's keys cannot be fetched.
AUTH_RETRY_AFTER_S = 5
#: Retry-After of a tenant over its rate (SPEC §6).
TENANT_RETRY_AFTER_S = 1
#: Retry-After when every slot runs an attempt (attempts take seconds or more).
CAPACITY_RETRY_AFTER_S = 5

REJECTED = metrics.counter(
    "servo_execute_rejected_total",
    "Refused /execute requests, by reason (never by tenant: cardinality).",
    ["reason"],
)
ERRORS = metrics.counter(
    "servo_execute_errors_total",
    "/execute requests that failed with an unexpected error (answered 500).",
    ["phase", "error_type"],
)


@dataclass(frozen=True, slots=True)
class _Refused:
    """Admission ended in an answer (401, 429, 400, ...)."""

    response: Response


class ExecuteEndpoint:
    """Serves /execute for one app (see the module docstring)."""

    def __init__(self, state: ServeState) -> None:
        self._state = state
        self._config = state.config

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        client = request.client.host if request.client else None
        admitted = await run_in_threadpool(self._admit, request.headers, body, client)
        if isinstance(admitted, _Refused):
            return admitted.response
        try:
            task = validate_task_request(admitted)
        except RequestInvalid as exc:
            return self._invalid(exc, tenant_hint(admitted))
        runtime, threads = self._state.runtime, self._state.threads
        if not self._state.started or runtime is None or threads is None:
            REJECTED.labels("starting").inc()
            return responses.error(
                503, "unavailable", message="starting", retry_after_s=CAPACITY_RETRY_AFTER_S
            )
        if not self._state.has_capacity():
            REJECTED.labels("at_capacity").inc()
            return responses.error(
                503,
                "at_capacity",
                message=f"this worker runs {self._config.max_concurrency} attempts already",
                retry_after_s=CAPACITY_RETRY_AFTER_S,
            )
        self._state.in_flight += 1
        trace = tracecontext.from_headers(request.headers)
        first = _first_delivery(request.headers)
        try:
            report = await anyio.to_thread.run_sync(self._run, task, trace, first, limiter=threads)
        except _Failed as failed:
            return self._failed(task, failed)
        finally:
            self._state.in_flight -= 1
        return JSONResponse(
            {"attempt_id": task.attempt_id, "outcome": _outcome(report), "reused": report.reused}
        )

    def _admit(self, headers: Mapping[str, str], body: bytes, client: str | None) -> Any:
        """Authenticate, then rate-limit by tenant; the parsed body, or the refusal.

        Runs in a worker thread: both steps may do network I/O.
        """
        try:
            self._config.authenticator.authenticate(headers, body, client=client)
        except AuthError as exc:
            REJECTED.labels("unauthenticated").inc()
            return _Refused(responses.error(401, "unauthenticated", reason=str(exc.reason)))
        except AuthUnavailable:
            REJECTED.labels("auth_unavailable").inc()
            return _Refused(
                responses.error(
                    503,
                    "auth_unavailable",
                    message="cannot verify credentials now; retry later",
                    retry_after_s=AUTH_RETRY_AFTER_S,
                )
            )
        try:
            raw = parse_body(body)
        except RequestInvalid as exc:
            return _Refused(self._invalid(exc, None))
        tenant = tenant_hint(raw)
        if tenant is not None:  # no valid tenant: validation refuses the body next
            decision = self._config.rate_limiter.tenant(tenant)
            if not decision.allowed:
                REJECTED.labels("rate_limited").inc()
                log.info("serve.rate_limited", route="/execute", tenant_id=tenant)
                return _Refused(
                    responses.error(
                        429,
                        "rate_limited",
                        message="too many requests for this tenant",
                        retry_after_s=max(decision.retry_after_s, TENANT_RETRY_AFTER_S),
                    )
                )
        return raw

    def _invalid(self, exc: RequestInvalid, tenant: str | None) -> Response:
        REJECTED.labels("invalid").inc()
        log.warning(
            "serve.invalid_request",
            route="/execute",
            tenant_id=tenant,
            fields=[p.field for p in exc.problems][:20],
        )
        return responses.validation_error([p.as_dict() for p in exc.problems])

    def _run(
        self, task: TaskRequest, trace: tracecontext.TraceContext | None, first: bool
    ) -> TaskReport:
        """Run the attempt, then the report hook (in a worker thread); the attempt's
        logs carry the dispatch's trace id. `first`: see `_first_delivery`."""
        runtime = self._state.runtime
        assert runtime is not None  # checked before the thread started
        ids = (
            {} if trace is None else {"trace_id": trace.trace_id, "parent_span_id": trace.parent_id}
        )
        try:
            with structlog.contextvars.bound_contextvars(**ids):
                report = runtime.execute(task, first_delivery=first)
        except Exception as exc:  # the ledger write failed: Cloud Tasks must retry
            raise _Failed("execute", exc) from exc
        hook = self._config.on_report
        if hook is not None:
            try:
                hook(task, report)
            except Exception as exc:  # the retry reuses the result and notifies again
                raise _Failed("report", exc) from exc
        return report

    def _failed(self, task: TaskRequest, failed: _Failed) -> Response:
        error_type = type(failed.error).__name__
        ERRORS.labels(failed.phase, error_type).inc()
        log.error(
            "serve.execute_failed",
            tenant_id=task.tenant_id,
            run_id=task.run_id,
            task_key=task.task_key,
            attempt_id=task.attempt_id,
            phase=failed.phase,
            error_type=error_type,
            exc_info=failed.error,
        )
        return responses.error(
            500,
            "internal",
            message="the attempt could not be reported; retry the request",
            attempt_id=task.attempt_id,
        )


class _Failed(Exception):
    """An unexpected error in `phase` (``execute`` or ``report``) of a worker thread."""

    def __init__(self, phase: str, error: Exception) -> None:
        super().__init__(phase)
        self.phase = phase
        self.error = error


def _first_delivery(headers: Mapping[str, str]) -> bool:
    """Whether Cloud Tasks says this is the task's first delivery (no retry, no
    response yet): the attempt then has no result record to look for. Requests
    without the headers (HMAC-signed, other queues) look for it."""
    return (
        headers.get("x-cloudtasks-taskretrycount") == "0"
        and headers.get("x-cloudtasks-taskexecutioncount") == "0"
    )


def _outcome(report: TaskReport) -> str:
    """The outcome the attempt's `TaskFinished` reported (``unknown`` without one)."""
    for event in reversed([*report.events, *report.handed]):
        if isinstance(event.payload, ev.TaskFinished):
            return str(event.payload.outcome)
    return "unknown"
