"""Retrying transient errors with bounded, jittered exponential backoff."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from servo.resilience.backoff import call_with_retries
from servo.resilience.clock import ManualClock
from servo.resilience.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, initial_delay=0.1, max_delay=0.3, jitter=0.0)


def flaky(failures: int, error: Exception) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return calls, call


def test_transient_errors_are_retried_with_growing_capped_delays() -> None:
    clock = ManualClock()
    calls, call = flaky(3, ConnectionError("reset"))
    retries: list[tuple[int, float]] = []
    result = call_with_retries(
        call,
        retryable=lambda e: isinstance(e, ConnectionError),
        policy=POLICY,
        sleep=clock.sleep,
        on_retry=lambda attempt, _e, delay: retries.append((attempt, delay)),
    )
    assert result == "done" and len(calls) == 4
    assert clock.slept == pytest.approx([0.1, 0.2, 0.3])
    assert [a for a, _ in retries] == [1, 2, 3]


def test_attempts_are_bounded_and_the_last_error_propagates() -> None:
    clock = ManualClock()
    calls, call = flaky(10, ConnectionError("down"))
    with pytest.raises(ConnectionError):
        call_with_retries(call, retryable=lambda e: True, policy=POLICY, sleep=clock.sleep)
    assert len(calls) == 4 and len(clock.slept) == 3


def test_other_errors_propagate_at_once() -> None:
    clock = ManualClock()
    calls, call = flaky(10, ValueError("bad input"))
    with pytest.raises(ValueError):
        call_with_retries(
            call,
            retryable=lambda e: isinstance(e, ConnectionError),
            policy=POLICY,
            sleep=clock.sleep,
        )
    assert len(calls) == 1 and clock.slept == []


def test_jitter_stays_within_its_fraction() -> None:
    clock = ManualClock()
    policy = RetryPolicy(max_attempts=6, initial_delay=1.0, max_delay=100.0, jitter=0.2)
    _, call = flaky(5, TimeoutError())
    call_with_retries(call, retryable=lambda e: True, policy=policy, sleep=clock.sleep)
    for attempt, delay in enumerate(clock.slept, start=1):
        assert 0.8 * 2 ** (attempt - 1) <= delay <= 1.2 * 2 ** (attempt - 1)
