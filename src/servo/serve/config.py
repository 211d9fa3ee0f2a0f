"""`ServeConfig`: everything `create_app` is handed, built once at the entry point.

The app builds none of its collaborators: the authenticator, the rate limiter, the
task runtime and the readiness checks arrive here, so tests hand in fakes and the
CLI hands in the real ones (`servo.serve.factory.build_serve_config`). The small
Protocols below are the only surface the app uses of each.

Roles decide which routes exist (a route a role does not serve answers 404):

- ``worker``: ``POST /execute``;
- ``reconciler``: ``POST /internal/reconcile``, ``/internal/timers``, ``/internal/sweep``
  (their handlers are plugged through `ServeConfig.internal_handlers`; an unplugged
  one answers 501);
- ``all``: both; every role serves the probes and ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from servo.errors import ConfigError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from servo.engine.request import TaskRequest
    from servo.resilience.rate_limit import Decision
    from servo.serve.auth import Principal
    from servo.worker.runtime import TaskReport

Role = Literal["worker", "reconciler", "all"]
ROLES: tuple[Role, ...] = ("worker", "reconciler", "all")

#: The reconciler's routes, ``/internal/{name}``, by handler name.
INTERNAL_ROUTES = ("reconcile", "timers", "sweep")

#: Largest request body accepted (a TaskRequest is a few kilobytes).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

#: A readiness check: returns when the dependency answers, raises when it does not.
ReadinessCheck = Callable[[], None]

#: Called in the worker thread after an attempt was reported to the ledger (the
#: reconciler notification). Raising makes /execute answer 500 so the push is retried;
#: the retry reuses the recorded result and notifies again.
ReportHook = Callable[["TaskRequest", "TaskReport"], None]


class Authenticates(Protocol):
    """What the app needs of `servo.serve.auth.Authenticator`."""

    def authenticate(
        self, headers: Mapping[str, str], body: bytes, *, client: str | None = None
    ) -> Principal:
        """Who sent the request; raises `AuthError` (401) or `AuthUnavailable` (503)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The effective configuration, without secrets (logged at startup)."""
        ...


class Limits(Protocol):
    """What the app needs of `servo.resilience.rate_limit.RateLimiter`."""

    def tenant(self, tenant_id: str) -> Decision:
        """One /execute request of `tenant_id`: allowed, or when to retry."""
        ...

    def metrics_client(self, ip: str) -> Decision:
        """One /metrics request from `ip`: allowed, or when to retry."""
        ...

    def describe(self) -> dict[str, Any]:
        """The effective limits, without secrets (logged at startup)."""
        ...


class Runtime(Protocol):
    """What the app needs of `servo.worker.runtime.TaskRuntime`."""

    def execute(self, request: TaskRequest, *, first_delivery: bool = False) -> TaskReport:
        """Run one attempt and report it; raises only if reporting fails.
        `first_delivery`: the queue never delivered it before (no record to look for)."""
        ...

    def close(self) -> None:
        """Stop background work (the heartbeat thread)."""
        ...


@dataclass(frozen=True, slots=True)
class InternalCall:
    """An authenticated request to one of the reconciler's ``/internal/*`` routes.

    Attributes:
        name: the route's name (``reconcile``, ``timers`` or ``sweep``).
        request: the HTTP request (headers, client, query).
        body: its body, already read (authentication needed it).
        principal: who sent it.
    """

    name: str
    request: Request
    body: bytes
    principal: Principal


#: Handles one authenticated ``/internal/*`` request.
InternalHandler = Callable[[InternalCall], Awaitable["Response"]]


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """What `create_app` serves with.

    Attributes:
        role: which routes exist (see the module docstring).
        authenticator: checks every /execute and /internal/* request first.
        rate_limiter: per-tenant limit on /execute, per-IP limit on /metrics.
        runtime: runs /execute requests (roles worker and all); None with
            `runtime_factory` or for the reconciler.
        runtime_factory: builds the runtime while the app starts (in a thread), for
            callers that want /health/startup to cover loading it.
        readiness_checks: dependency name -> check, run by the readiness probes.
        readiness_timeout_s: seconds one check may take before it counts as down.
        readiness_cache_s: seconds a readiness result is reused, so that frequent or
            hostile probes cost the dependencies at most one call per check per
            period.
        metrics_token: bearer token /metrics requires; None leaves it open (still
            rate-limited per IP).
        on_report: see `ReportHook`.
        internal_handlers: handlers of ``/internal/{name}`` by name; a missing one
            answers 501.
        max_concurrency: attempts run at once; beyond it /execute answers 503 with
            Retry-After (Cloud Tasks then backs off).
        max_body_bytes: larger request bodies are refused (413) before any work.
        version: code version facts reported by ``GET /health`` (servo version,
            definitions digest).
    """

    role: Role
    authenticator: Authenticates = field(repr=False)
    rate_limiter: Limits = field(repr=False)
    runtime: Runtime | None = field(default=None, repr=False)
    runtime_factory: Callable[[], Runtime] | None = field(default=None, repr=False)
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    readiness_timeout_s: float = 2.0
    readiness_cache_s: float = 1.0
    metrics_token: str | None = field(default=None, repr=False)
    on_report: ReportHook | None = None
    internal_handlers: Mapping[str, InternalHandler] = field(default_factory=dict)
    max_concurrency: int = 4
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    version: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.role not in ROLES:
            problems.append(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.serves_worker and (self.runtime is None) == (self.runtime_factory is None):
            problems.append(f"role {self.role!r} needs exactly one of runtime, runtime_factory")
        unknown = sorted(set(self.internal_handlers) - set(INTERNAL_ROUTES))
        if unknown:
            problems.append(
                f"unknown internal handlers {unknown}; known: {', '.join(INTERNAL_ROUTES)}"
            )
        if self.max_concurrency <= 0:
            problems.append(f"max_concurrency must be > 0, not {self.max_concurrency}")
        if self.readiness_timeout_s <= 0:
            problems.append(f"readiness_timeout_s must be > 0, not {self.readiness_timeout_s}")
        if self.readiness_cache_s < 0:
            problems.append(f"readiness_cache_s must be >= 0, not {self.readiness_cache_s}")
        if self.max_body_bytes <= 0:
            problems.append(f"max_body_bytes must be > 0, not {self.max_body_bytes}")
        if problems:
            raise ConfigError("invalid serve configuration: " + "; ".join(problems))

    @property
    def serves_worker(self) -> bool:
        """Whether ``POST /execute`` is served."""
        return self.role in ("worker", "all")

    @property
    def serves_reconciler(self) -> bool:
        """Whether the ``/internal/*`` routes are served."""
        return self.role in ("reconciler", "all")
