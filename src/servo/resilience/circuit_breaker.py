"""Circuit breakers for external dependencies (SPEC.md §6), one per dependency.

Policy: **consecutive failures**. Closed, the breaker counts tripping failures in a
row; `failure_threshold` of them open it. Open, every call fails fast with
`CircuitOpenError` for `half_open_timeout_s`; then the breaker is half-open and lets
exactly **one** recovery probe through at a time (the others fail fast — the
half-open guard). `success_threshold` successful probes close it; a failed probe
opens it again for another timeout. A probe that neither succeeds nor fails (it
was cancelled: `KeyboardInterrupt`, `asyncio.CancelledError`) frees the slot; a
probe that hangs longer than the timeout is presumed lost and another may start.

What trips it is decided by a classifier, ``trips(exc) -> bool``: network errors,
timeouts, 5xx and 429 trip; 4xx-like answers (bad request, not found, a constraint
violation) prove the dependency is up, so they count as successes for the breaker
(and still propagate to the caller). `trips_on_unavailability` is the default; each
dependency may pass its own (the catalog passes its transient-error test).

Usage, the same from synchronous and asynchronous code (the state machine is one,
guarded by a lock that is never held across the call)::

    breaker = CircuitBreaker("postgres", BreakerConfig.from_settings(s.circuit_breaker.postgres))
    result = breaker.call(fetch)          # sync
    with breaker.guard():                 # sync or async
        result = await client.fetch()

Metrics: ``servo_circuit_breaker_state{dependency}`` (0 closed, 1 open, 2 half-open),
``servo_circuit_breaker_opens_total{dependency}``,
``servo_circuit_breaker_half_open_attempts_total{dependency,result}`` (result:
success | failure). Breakers of one dependency in one process share those series.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, TypeVar

from servo.errors import CircuitOpenError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.resilience.clock import Clock, monotonic

if TYPE_CHECKING:
    from servo.config.settings import BreakerSettings

log = get_logger(__name__)

T = TypeVar("T")

STATE = metrics.gauge(
    "servo_circuit_breaker_state",
    "Circuit breaker state per dependency: 0 closed, 1 open, 2 half-open.",
    ["dependency"],
)
OPENS = metrics.counter(
    "servo_circuit_breaker_opens_total", "Times a circuit breaker opened.", ["dependency"]
)
HALF_OPEN_ATTEMPTS = metrics.counter(
    "servo_circuit_breaker_half_open_attempts_total",
    "Recovery probes let through by a half-open breaker, by result (success, failure).",
    ["dependency", "result"],
)

#: Error kinds (`servo.resilience.retry.ErrorKind` values) that mean "unavailable".
_TRIPPING_KINDS = frozenset({"network", "timeout", "rate_limit", "unavailable"})


class BreakerState(IntEnum):
    """A breaker's state; the value is what the state gauge reports."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


def _status_code(exc: BaseException) -> int | None:
    for owner in (exc, getattr(exc, "response", None)):
        for attribute in ("status_code", "status", "code"):
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def trips_on_unavailability(exc: BaseException) -> bool:
    """The default classifier: network errors, timeouts, 5xx and 429 trip; 4xx do not.

    An exception may declare itself with an ``error_kind`` attribute (network,
    timeout, rate_limit, unavailable trip); an HTTP status is read from
    ``status_code``/``status``/``code`` on the exception or its ``response``.
    """
    kind = getattr(exc, "error_kind", None)
    if kind is not None:
        return str(getattr(kind, "value", kind)) in _TRIPPING_KINDS
    status = _status_code(exc)
    if status is not None:
        return status >= 500 or status == 429
    return isinstance(exc, ConnectionError | TimeoutError)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker trips and recovers.

    Attributes:
        failure_threshold: consecutive tripping failures that open the breaker (>= 1).
        half_open_timeout_s: seconds the breaker stays open before a probe (> 0).
        success_threshold: successful probes in a row that close it again (>= 1).
    """

    failure_threshold: int = 5
    half_open_timeout_s: float = 30.0
    success_threshold: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.success_threshold < 1:
            raise ValueError("failure_threshold and success_threshold must be >= 1")
        if self.half_open_timeout_s <= 0:
            raise ValueError("half_open_timeout_s must be > 0")

    @classmethod
    def from_settings(cls, settings: BreakerSettings) -> BreakerConfig:
        """From one dependency's `BreakerSettings` (``SERVO_CB_{DEP}_*``)."""
        return cls(
            failure_threshold=settings.failure_threshold,
            half_open_timeout_s=settings.half_open_timeout_secs,
            success_threshold=settings.success_threshold,
        )


class CircuitBreaker:
    """A consecutive-failures circuit breaker with a half-open guard; thread-safe.

    Args:
        dependency: the dependency's name, the metrics' label (``postgres``, ...).
        config: thresholds and timeout.
        trips: decides whether an exception counts as a failure of the dependency.
        clock: seconds (monotonic); tests pass a `ManualClock`.
    """

    def __init__(
        self,
        dependency: str,
        config: BreakerConfig | None = None,
        *,
        trips: Callable[[BaseException], bool] = trips_on_unavailability,
        clock: Clock = monotonic,
    ) -> None:
        self.dependency = dependency
        self.config = config or BreakerConfig()
        self._trips = trips
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        STATE.labels(dependency).set(BreakerState.CLOSED)

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker turns half-open on the next call)."""
        return self._state

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` through the breaker.

        Raises:
            CircuitOpenError: the breaker is open, or half-open with a probe in flight.
            Exception: whatever `fn` raised, after it was counted.
        """
        with self.guard():
            return fn()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Admit the enclosed block (or refuse it) and record how it ended.

        Raises:
            CircuitOpenError: the breaker is open, or half-open with a probe in flight.
        """
        probe = self._admit()
        try:
            yield
        except Exception as exc:
            self._record(probe, failed=self._trips(exc), error=exc)
            raise
        except BaseException:
            if probe:
                self._release_probe()
            raise
        else:
            self._record(probe, failed=False, error=None)

    # ---------------------------------------------------------------- state machine
    def _admit(self) -> bool:
        """Let a call through; True when it is the half-open probe."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return False
            now = self._clock()
            if self._state is BreakerState.OPEN:
                remaining = self._opened_at + self.config.half_open_timeout_s - now
                if remaining > 0:
                    raise CircuitOpenError(self.dependency, remaining, f"retry in {remaining:.1f}s")
                self._set_state(BreakerState.HALF_OPEN)
                self._successes = 0
                self._probe_started = None
            started = self._probe_started
            if started is not None and now - started < self.config.half_open_timeout_s:
                raise CircuitOpenError(self.dependency, 0.0, "a recovery probe is in flight")
            self._probe_started = now
            return True

    def _record(self, probe: bool, *, failed: bool, error: BaseException | None) -> None:
        with self._lock:
            if probe:
                self._probe_started = None
                HALF_OPEN_ATTEMPTS.labels(self.dependency, "failure" if failed else "success").inc()
                if self._state is not BreakerState.HALF_OPEN:
                    return
                if failed:
                    self._open(error)
                    return
                self._successes += 1
                if self._successes >= self.config.success_threshold:
                    self._failures = 0
                    self._set_state(BreakerState.CLOSED)
                    log.info("circuit_breaker.closed", dependency=self.dependency)
                return
            if self._state is not BreakerState.CLOSED:
                return  # a call admitted before the breaker opened: its outcome is stale
            if not failed:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self.config.failure_threshold:
                self._open(error)

    def _release_probe(self) -> None:
        with self._lock:
            self._probe_started = None

    def _open(self, error: BaseException | None) -> None:
        """Open the breaker (lock held)."""
        self._opened_at = self._clock()
        self._set_state(BreakerState.OPEN)
        OPENS.labels(self.dependency).inc()
        log.warning(
            "circuit_breaker.opened",
            dependency=self.dependency,
            consecutive_failures=self._failures,
            retry_in_s=self.config.half_open_timeout_s,
            error_type=type(error).__name__ if error is not None else None,
        )

    def _set_state(self, state: BreakerState) -> None:
        self._state = state
        STATE.labels(self.dependency).set(state)
