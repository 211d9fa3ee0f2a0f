"""The reconciler role's handlers: `/internal/reconcile`, `/internal/timers`, `/internal/sweep`.

Each is a thin edge over `servo.runner.service.ReconcilerService`; authentication
happened before (`servo.serve.internal`). Bodies:

- reconcile: ``{"tenant_id", "workspace_id", "paths": [ledger object, ...],
  "events": [event, ...]}`` — a submitted run or a worker's report: ledger objects it
  wrote (every path must lie in that workspace's ledger) and worker events
  (`TaskStarted`, `TaskHeartbeat`, `TaskFinished` of that workspace) the step writes
  to the ledger (ADR 0025); ``events`` is optional, and one of the two is non-empty;
- timers: ``{"tenant_id", "workspace_id", "due_at"}`` (epoch µs) — Cloud Tasks woke
  the workspace at its ``schedule_time``: every timer due by now fires; a wake-up
  delivered long before ``due_at`` (a hop of a horizon beyond the queue's 30 days) is
  armed again for the rest of the way;
- sweep: ``{}`` for every registered workspace, or
  ``{"workspaces": [{"tenant_id", "workspace_id"}, ...]}``.

Answers: 200 with what the step did; 400 in SPEC §9's shape for a bad body (a
redelivery cannot fix it); 503 with ``Retry-After`` when the step failed (a store or
queue error: the queue delivers it again and the step, idempotent, redoes it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from servo.engine import events as ev
from servo.engine.ids import now_us
from servo.errors import EventDecodeError, ServoError
from servo.observability.logging import get_logger
from servo.runner.service import ReconcilerService
from servo.serve import responses
from servo.serve.config import InternalCall, InternalHandler
from servo.serve.validation import (
    FieldProblem,
    RequestInvalid,
    object_problems,
    parse_body,
    scope_id_problems,
    text_problems,
    type_problems,
)

log = get_logger(__name__)

#: Seconds the queue waits before delivering a failed step again.
STEP_RETRY_AFTER_S = 1
#: Microseconds a timer may arrive before its due time and still be fired here (after
#: a wait); one arriving earlier is a hop of a long horizon and is scheduled again.
EARLY_TOLERANCE_US = 1_000_000
#: Most ledger objects one reconcile request may name.
MAX_PATHS = 1000
#: Most events one reconcile request may carry.
MAX_EVENTS = 1000
#: The events a worker may report inside a reconcile request.
WORKER_EVENTS = (ev.TaskStarted, ev.TaskHeartbeat, ev.TaskFinished)


def _paths(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (list,), "a list of ledger paths")
    if problems:
        return problems
    if len(value) > MAX_PATHS:
        return [FieldProblem(name, "invalid_value", f"must name at most {MAX_PATHS} paths")]
    for index, path in enumerate(value):
        problems += text_problems(f"{name}[{index}]", path)
    return problems


def _events(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (list,), "a list of events")
    if problems:
        return problems
    if len(value) > MAX_EVENTS:
        return [FieldProblem(name, "invalid_value", f"must carry at most {MAX_EVENTS} events")]
    return problems


def _decode(name: str, raw: list[Any], tenant: str, workspace: str) -> list[ev.Event]:
    """The worker events of a reconcile body, each of (tenant, workspace).

    Raises:
        RequestInvalid: an event is malformed, of another workspace, or not a
            worker's.
    """
    events, problems = [], []
    for index, item in enumerate(raw):
        where = f"{name}[{index}]"
        try:
            if not isinstance(item, dict):
                raise EventDecodeError("must be an object")
            event = ev.Event.from_dict(item)
        except EventDecodeError as exc:
            problems.append(FieldProblem(where, "invalid_value", str(exc)))
            continue
        if not isinstance(event.payload, WORKER_EVENTS):
            kinds = ", ".join(k.type_name for k in WORKER_EVENTS)
            problems.append(FieldProblem(where, "invalid_value", f"must be one of {kinds}"))
        elif (event.tenant_id, event.workspace_id) != (tenant, workspace):
            problems.append(
                FieldProblem(where, "invalid_value", f"must belong to {tenant}/{workspace}")
            )
        else:
            events.append(event)
    if problems:
        raise RequestInvalid(problems)
    return events


def _due_at(name: str, value: Any) -> list[FieldProblem]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [FieldProblem(name, "invalid_type", "must be an epoch in microseconds")]
    return []


def _workspaces(name: str, value: Any) -> list[FieldProblem]:
    problems = type_problems(name, value, (list,), "a list of workspaces")
    if problems:
        return problems
    scope = {"tenant_id": scope_id_problems, "workspace_id": scope_id_problems}
    for index, item in enumerate(value):
        problems += object_problems(f"{name}[{index}]", item, scope)
    return problems


def _checked(body: bytes, checks: Mapping[str, Any], optional: frozenset[str] = frozenset()) -> Any:
    raw = parse_body(body)
    problems = object_problems("", raw, checks, optional)
    if problems:
        raise RequestInvalid(problems)
    return raw


def parse_reconcile(body: bytes) -> tuple[str, str, list[str], list[ev.Event]]:
    """(tenant, workspace, paths, events) of a reconcile body.

    Raises:
        RequestInvalid: a field is missing or wrong, a path lies outside the
            workspace's ledger, an event is not a worker's event of that workspace,
            or the body names neither a path nor an event.
    """
    checks = {"tenant_id": scope_id_problems, "workspace_id": scope_id_problems,
              "paths": _paths, "events": _events}  # fmt: skip
    raw = _checked(body, checks, frozenset({"events"}))
    tenant, workspace, paths = raw["tenant_id"], raw["workspace_id"], list(raw["paths"])
    scope = f"ledger/{tenant}/{workspace}/"
    outside = [i for i, p in enumerate(paths) if not p.startswith(scope) or ".." in p]
    if outside:
        raise RequestInvalid(
            [
                FieldProblem(f"paths[{i}]", "invalid_value", f"must lie under {scope}")
                for i in outside
            ]
        )
    events = _decode("events", raw.get("events", []), tenant, workspace)
    if not paths and not events:
        raise RequestInvalid(
            [FieldProblem("paths", "invalid_value", "must name a path when no event is carried")]
        )
    return tenant, workspace, paths, events


def parse_timer(body: bytes) -> tuple[str, str, int]:
    """(tenant, workspace, due at) of a wake-up body.

    Raises:
        RequestInvalid: a field is missing or wrong.
    """
    checks = {"tenant_id": scope_id_problems, "workspace_id": scope_id_problems,
              "due_at": _due_at}  # fmt: skip
    raw = _checked(body, checks)
    return raw["tenant_id"], raw["workspace_id"], raw["due_at"]


def parse_sweep(body: bytes) -> list[tuple[str, str]] | None:
    """The workspaces a sweep body names, or None for every registered one.

    Raises:
        RequestInvalid: a field is wrong.
    """
    if not body.strip():
        return None
    raw = _checked(body, {"workspaces": _workspaces}, frozenset({"workspaces"}))
    if "workspaces" not in raw:
        return None
    return [(w["tenant_id"], w["workspace_id"]) for w in raw["workspaces"]]


def reconciler_handlers(
    service: ReconcilerService,
    rearm: Callable[[str, str, int], None],
    *,
    clock: Callable[[], int] = now_us,
) -> dict[str, InternalHandler]:
    """The ``/internal/*`` handlers of a reconciler over `service`.

    Args:
        rearm: wakes (tenant, workspace) at a due time again (after a hop of a horizon
            beyond the queue's).
        clock: now, in epoch µs.
    """

    async def reconcile(call: InternalCall) -> Response:
        try:
            tenant, workspace, paths, events = parse_reconcile(call.body)
        except RequestInvalid as exc:
            return responses.validation_error([p.as_dict() for p in exc.problems])
        return await _run("reconcile", lambda: service.reconcile(tenant, workspace, paths, events))

    async def fire(call: InternalCall) -> Response:
        try:
            tenant, workspace, due_at = parse_timer(call.body)
        except RequestInvalid as exc:
            return responses.validation_error([p.as_dict() for p in exc.problems])
        early_us = due_at - clock()
        if early_us > EARLY_TOLERANCE_US:  # a hop of a long horizon: the rest of the way
            await run_in_threadpool(rearm, tenant, workspace, due_at)
            return JSONResponse({"rearmed": True, "due_at": due_at})
        if early_us > 0:  # a queue's clock a little ahead: wait rather than re-arm
            await asyncio.sleep(early_us / 1_000_000)  # (the same name would be a duplicate)
        return await _run("timers", lambda: service.fire_due(tenant, workspace))

    async def sweep(call: InternalCall) -> Response:
        try:
            scopes = parse_sweep(call.body)
        except RequestInvalid as exc:
            return responses.validation_error([p.as_dict() for p in exc.problems])

        def run() -> dict[str, Any]:
            done = service.sweep(scopes)
            return {"workspaces": [{"tenant_id": t, "workspace_id": w, **asdict(summary)}
                                   for (t, w), summary in done.items()]}  # fmt: skip

        return await _run("sweep", run)

    return {"reconcile": reconcile, "timers": fire, "sweep": sweep}


async def _run(route: str, step: Callable[[], Any]) -> Response:
    """Run `step` off the event loop; a failure asks the queue to deliver again."""
    try:
        result = await run_in_threadpool(step)
    except (ServoError, OSError) as exc:
        log.warning("serve.reconcile_failed", route=route, error_type=type(exc).__name__)
        return responses.error(
            503,
            "step_failed",
            message="the step failed and will be redone when the request is delivered again",
            error_type=type(exc).__name__,
            retry_after_s=STEP_RETRY_AFTER_S,
        )
    body = result if isinstance(result, dict) else asdict(result)
    return JSONResponse(body)
