"""The circuit breaker: consecutive failures, one probe at a time, success threshold."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from servo.config.settings import BreakerSettings
from servo.errors import CircuitOpenError
from servo.observability import metrics
from servo.resilience.circuit_breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    trips_on_unavailability,
)
from servo.resilience.clock import ManualClock


class HttpError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def fail(exc: BaseException) -> Any:
    def call() -> Any:
        raise exc

    return call


def ok() -> str:
    return "ok"


def breaker(clock: ManualClock, **config: Any) -> CircuitBreaker:
    """A breaker with its own dependency label, so metrics start at zero."""
    options = {"failure_threshold": 3, "half_open_timeout_s": 10.0, **config}
    return CircuitBreaker(f"dep-{uuid.uuid4().hex[:8]}", BreakerConfig(**options), clock=clock)


def state_metric(b: CircuitBreaker) -> float:
    return metrics.sample("servo_circuit_breaker_state", {"dependency": b.dependency})


def opens(b: CircuitBreaker) -> float:
    return metrics.sample("servo_circuit_breaker_opens_total", {"dependency": b.dependency})


def probes(b: CircuitBreaker, result: str) -> float:
    labels = {"dependency": b.dependency, "result": result}
    return metrics.sample("servo_circuit_breaker_half_open_attempts_total", labels)


def trip(b: CircuitBreaker) -> None:
    for _ in range(b.config.failure_threshold):
        with pytest.raises(ConnectionError):
            b.call(fail(ConnectionError("down")))


def test_trips_after_n_consecutive_failures_then_fails_fast() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            b.call(fail(ConnectionError("down")))
    assert b.state is BreakerState.CLOSED and state_metric(b) == 0
    with pytest.raises(ConnectionError):
        b.call(fail(ConnectionError("down")))
    assert b.state is BreakerState.OPEN and state_metric(b) == 1 and opens(b) == 1
    called = []
    with pytest.raises(CircuitOpenError) as refused:
        b.call(lambda: called.append(1))
    assert called == [] and refused.value.dependency == b.dependency
    assert refused.value.retry_after_s == pytest.approx(10.0)


def test_a_success_resets_the_consecutive_count() -> None:
    b = breaker(ManualClock())
    for _ in range(5):
        for _ in range(2):
            with pytest.raises(TimeoutError):
                b.call(fail(TimeoutError()))
        assert b.call(ok) == "ok"
    assert b.state is BreakerState.CLOSED and opens(b) == 0


@pytest.mark.parametrize(
    "error", [HttpError(400), HttpError(404), ValueError("bad"), KeyError("k")]
)
def test_4xx_like_errors_never_trip_it(error: Exception) -> None:
    b = breaker(ManualClock())
    for _ in range(10):
        with pytest.raises(type(error)):
            b.call(fail(error))
    assert b.state is BreakerState.CLOSED and opens(b) == 0


def test_4xx_between_failures_proves_the_dependency_is_up() -> None:
    b = breaker(ManualClock())
    for _ in range(4):
        for error in (HttpError(503), HttpError(503), HttpError(404)):
            with pytest.raises(HttpError):
                b.call(fail(error))
    assert b.state is BreakerState.CLOSED


def test_after_the_timeout_one_probe_closes_it() -> None:
    clock = ManualClock()
    b = breaker(clock)
    trip(b)
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    clock.advance(0.1)
    assert b.call(ok) == "ok"
    assert b.state is BreakerState.CLOSED and state_metric(b) == 0
    assert probes(b, "success") == 1 and probes(b, "failure") == 0


def test_only_one_probe_runs_at_a_time() -> None:
    clock = ManualClock()
    b = breaker(clock)
    trip(b)
    clock.advance(10)
    refused: list[BaseException] = []

    def probe() -> str:
        assert b.state is BreakerState.HALF_OPEN and state_metric(b) == 2
        try:
            b.call(ok)
        except CircuitOpenError as exc:
            refused.append(exc)
        return "probed"

    assert b.call(probe) == "probed"
    assert len(refused) == 1 and "probe is in flight" in str(refused[0])
    assert b.state is BreakerState.CLOSED


def test_threads_racing_a_half_open_breaker_run_exactly_one_probe() -> None:
    clock = ManualClock()
    b = breaker(clock)
    trip(b)
    clock.advance(10)
    barrier = threading.Barrier(8)
    release = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def slow_probe() -> None:
        release.wait(timeout=10)

    def worker() -> None:
        barrier.wait(timeout=10)
        try:
            b.call(slow_probe)
            result = "ran"
        except CircuitOpenError:
            result = "refused"
        with lock:
            outcomes.append(result)
        if result == "refused" and outcomes.count("refused") == 7:
            release.set()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == ["ran"] + ["refused"] * 7
    assert b.state is BreakerState.CLOSED


def test_a_failed_probe_opens_it_again() -> None:
    clock = ManualClock()
    b = breaker(clock)
    trip(b)
    clock.advance(10)
    with pytest.raises(ConnectionError):
        b.call(fail(ConnectionError("still down")))
    assert b.state is BreakerState.OPEN and opens(b) == 2 and probes(b, "failure") == 1
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    clock.advance(10)
    assert b.call(ok) == "ok" and b.state is BreakerState.CLOSED


def test_success_threshold_needs_that_many_probes() -> None:
    clock = ManualClock()
    b = breaker(clock, success_threshold=3)
    trip(b)
    clock.advance(10)
    for expected in (BreakerState.HALF_OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED):
        b.call(ok)
        assert b.state is expected
    assert probes(b, "success") == 3


def test_a_cancelled_probe_frees_the_slot_and_a_hung_one_expires() -> None:
    clock = ManualClock()
    b = breaker(clock)
    trip(b)
    clock.advance(10)
    with pytest.raises(KeyboardInterrupt):
        b.call(fail(KeyboardInterrupt()))
    assert b.state is BreakerState.HALF_OPEN
    with b.guard():  # a probe that hangs...
        with pytest.raises(CircuitOpenError):
            b.call(ok)
        clock.advance(10)  # ...longer than the timeout no longer blocks recovery
        assert b.call(ok) == "ok"
    assert b.state is BreakerState.CLOSED


def test_guard_works_in_async_code() -> None:
    clock = ManualClock()
    b = breaker(clock)

    async def failing() -> None:
        with b.guard():
            await asyncio.sleep(0)
            raise ConnectionError("down")

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await failing()

    asyncio.run(main())
    assert b.state is BreakerState.OPEN


def test_config_from_settings_and_validation() -> None:
    settings = BreakerSettings(failure_threshold=7, half_open_timeout_secs=2.5, success_threshold=2)
    assert BreakerConfig.from_settings(settings) == BreakerConfig(7, 2.5, 2)
    with pytest.raises(ValueError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerConfig(half_open_timeout_s=0)


class Kinded(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.error_kind = kind


class WithResponse(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.response = type("Response", (), {"status_code": status})()


@pytest.mark.parametrize(
    ("error", "trips"),
    [
        (HttpError(500), True),
        (HttpError(503), True),
        (HttpError(429), True),
        (HttpError(400), False),
        (HttpError(401), False),
        (HttpError(404), False),
        (WithResponse(502), True),
        (WithResponse(409), False),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (Kinded("network"), True),
        (Kinded("rate_limit"), True),
        (Kinded("validation"), False),
        (ValueError("x"), False),
        (RuntimeError("x"), False),
    ],
)
def test_default_classifier(error: BaseException, trips: bool) -> None:
    assert trips_on_unavailability(error) is trips
