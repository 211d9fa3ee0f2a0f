"""Queue configuration as the local server applies it: defaults, backoff, giving up.

Defaults are Cloud Tasks' own: 500 dispatches/s, 1,000 concurrent dispatches,
100 attempts, backoff from 0.1 s to 3,600 s doubling 16 times, no retry-duration
limit. Proto3 cannot tell "unset" from zero, so a zero is read as "use the default"
(as the real service does when a queue is created), except ``max_retry_duration``,
whose zero means "no limit".

``max_burst_size`` is output only in Cloud Tasks (the service derives it from the
rate: 100 for 500/s). Here an explicit value is honoured, which tests use to get
exact timings, and an unset one is derived as ``ceil(rate / 5)`` (0.2 s of
traffic) between 1 and 100.

Backoff follows the documented schedule: the interval starts at ``min_backoff``,
doubles ``max_doublings`` times, then grows linearly by the last doubled interval,
capped at ``max_backoff`` (min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160,
240, 300, 300, ...).

Giving up: the attempts limit (``max_attempts``; -1 unlimited) and the duration limit
(``max_retry_duration`` since the first attempt; 0 unlimited) must both be reached
when both are set (the documented rule); when only one is set, that one decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from servo.testing.cloud_tasks._proto import Queue, tasks_v2
from servo.testing.cloud_tasks.errors import ApiError, Code

#: Cloud Tasks' limits per queue.
MAX_RATE = 500.0
MAX_CONCURRENT = 5000

DEFAULT_RATE = 500.0
DEFAULT_CONCURRENT = 1000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 3600.0
DEFAULT_MAX_DOUBLINGS = 16


def default_burst(rate: float) -> int:
    """The burst size derived from a rate: 0.2 s of traffic, 1 to 100."""
    return max(1, min(100, math.ceil(rate / 5)))


def fill_defaults(queue: Queue) -> None:
    """Replace the zero (unset) limits of `queue` with the defaults, in place.

    Raises:
        ApiError: INVALID_ARGUMENT for limits the real service refuses.
    """
    rates = queue.rate_limits
    if rates.max_dispatches_per_second <= 0:
        rates.max_dispatches_per_second = DEFAULT_RATE
    if rates.max_dispatches_per_second > MAX_RATE:
        raise ApiError(Code.INVALID_ARGUMENT, f"max_dispatches_per_second above {MAX_RATE}")
    if rates.max_burst_size <= 0:
        rates.max_burst_size = default_burst(rates.max_dispatches_per_second)
    if rates.max_concurrent_dispatches <= 0:
        rates.max_concurrent_dispatches = DEFAULT_CONCURRENT
    if rates.max_concurrent_dispatches > MAX_CONCURRENT:
        raise ApiError(Code.INVALID_ARGUMENT, f"max_concurrent_dispatches above {MAX_CONCURRENT}")
    retry = queue.retry_config
    if retry.max_attempts == 0:
        retry.max_attempts = DEFAULT_MAX_ATTEMPTS
    if retry.max_attempts < -1:
        raise ApiError(Code.INVALID_ARGUMENT, "max_attempts must be -1 (unlimited) or positive")
    if _seconds(retry.min_backoff) <= 0:
        retry.min_backoff = timedelta(seconds=DEFAULT_MIN_BACKOFF_S)
    if _seconds(retry.max_backoff) <= 0:
        retry.max_backoff = timedelta(seconds=DEFAULT_MAX_BACKOFF_S)
    if retry.max_doublings <= 0:
        retry.max_doublings = DEFAULT_MAX_DOUBLINGS
    if _seconds(retry.min_backoff) > _seconds(retry.max_backoff):
        raise ApiError(Code.INVALID_ARGUMENT, "min_backoff must not exceed max_backoff")
    if queue.state == tasks_v2.Queue.State.STATE_UNSPECIFIED:
        queue.state = tasks_v2.Queue.State.RUNNING


def _seconds(value: timedelta | None) -> float:
    return 0.0 if value is None else value.total_seconds()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A queue's retry configuration as plain numbers.

    Attributes:
        max_attempts: attempts in all (-1: unlimited).
        max_retry_duration_s: seconds from the first attempt (0: unlimited).
        min_backoff_s: the first interval.
        max_backoff_s: the cap on intervals.
        max_doublings: how many times the interval doubles before it grows linearly.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration_s: float = 0.0
    min_backoff_s: float = DEFAULT_MIN_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S
    max_doublings: int = DEFAULT_MAX_DOUBLINGS

    @classmethod
    def of(cls, queue: Queue) -> RetryPolicy:
        """The policy of a queue whose defaults were filled (`fill_defaults`)."""
        retry = queue.retry_config
        return cls(
            max_attempts=retry.max_attempts,
            max_retry_duration_s=_seconds(retry.max_retry_duration),
            min_backoff_s=_seconds(retry.min_backoff),
            max_backoff_s=_seconds(retry.max_backoff),
            max_doublings=retry.max_doublings,
        )

    def backoff_s(self, failures: int) -> float:
        """The wait after the `failures`-th failed attempt (1-based)."""
        n = max(0, failures - 1)
        doublings = max(0, self.max_doublings)
        if n <= doublings:
            interval = self.min_backoff_s * 2.0**n
        else:
            interval = self.min_backoff_s * 2.0**doublings * (1 + n - doublings)
        return min(interval, self.max_backoff_s)

    def gives_up(self, attempts: int, age_s: float) -> bool:
        """Whether a task attempted `attempts` times, first `age_s` ago, is done for."""
        attempts_spent = self.max_attempts != -1 and attempts >= self.max_attempts
        duration_spent = self.max_retry_duration_s > 0 and age_s >= self.max_retry_duration_s
        if self.max_attempts == -1:
            return duration_spent
        if self.max_retry_duration_s <= 0:
            return attempts_spent
        return attempts_spent and duration_spent


class TokenBucket:
    """A token bucket: `burst` tokens at most, refilled at `rate` per second.

    Args:
        rate: tokens added per second (> 0).
        burst: capacity (>= 1); the bucket starts full.
        now: the current time in seconds.
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def reconfigure(self, rate: float, burst: int) -> None:
        """Change rate and capacity, keeping the tokens held (capped)."""
        self.rate, self.burst = rate, burst
        self._tokens = min(self._tokens, float(burst))

    def take(self, now: float) -> bool:
        """Take one token if one is there."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate)

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)
