"""Retry a synchronous call on transient errors, with bounded exponential backoff.

The delays come from a `RetryPolicy` (attempts, initial delay, cap, multiplier,
jitter); which errors are transient is the caller's predicate, because only the
caller's boundary knows its driver's errors. Anything else propagates at once, and
the last transient error propagates when the attempts are spent.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from servo.resilience.retry import RetryPolicy

T = TypeVar("T")

#: ``on_retry(attempt, error, delay_s)``: told before each wait (for logs and metrics).
RetryHook = Callable[[int, BaseException, float], None]


def call_with_retries(
    fn: Callable[[], T],
    *,
    retryable: Callable[[BaseException], bool],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryHook | None = None,
) -> T:
    """Call `fn`; on an error `retryable` accepts, wait and call again.

    Args:
        fn: the call; it must be safe to repeat (idempotent, or one transaction).
        retryable: True for errors worth another attempt.
        policy: attempts and delays; jitter is seeded per call so clients spread out.
        sleep: waits between attempts (tests pass `ManualClock.sleep`).
        on_retry: called before each wait.

    Raises:
        Exception: the first non-retryable error, or the last retryable one.
    """
    seed = secrets.token_hex(4)
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= policy.max_attempts or not retryable(exc):
                raise
            delay = policy.delay(attempt, seed)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
            attempt += 1
