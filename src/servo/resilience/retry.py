"""Retry policy: a pure decision object (no I/O, no clock, no global random).

`RetryPolicy.decide(attempt, error_kind)` answers whether attempt `attempt` (1-based)
that failed with an error of `error_kind` should be retried, and after how long.

Defaults (SPEC.md §6): exponential, 5 attempts, 2 s initial delay, 300 s cap, x2,
jitter 0.1; retry network, timeout, rate-limit, unavailable and internal errors;
never authentication, authorization, validation or not-found.

Jitter is deterministic given a seed (e.g. the task's dispatch id), so the same
failure always gets the same delay and the decision can be replayed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from servo.errors import ConfigError


class ErrorKind(StrEnum):
    """How an error is classified for retries."""

    NETWORK = "network"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    VALIDATION = "validation"
    NOT_FOUND = "not_found"


RETRYABLE_BY_DEFAULT = frozenset(
    {ErrorKind.NETWORK, ErrorKind.TIMEOUT, ErrorKind.RATE_LIMIT, ErrorKind.UNAVAILABLE,
     ErrorKind.INTERNAL}
)  # fmt: skip
NEVER_RETRIED_BY_DEFAULT = frozenset(
    {ErrorKind.AUTHENTICATION, ErrorKind.AUTHORIZATION, ErrorKind.VALIDATION,
     ErrorKind.NOT_FOUND}
)  # fmt: skip


def classify(error: BaseException) -> ErrorKind:
    """Classify an exception raised by asset code or a dependency.

    An exception may say for itself with an `error_kind` attribute (an `ErrorKind` or
    its value); otherwise built-in types map to kinds and anything else is INTERNAL.
    """
    declared = getattr(error, "error_kind", None)
    if declared is not None:
        try:
            return ErrorKind(declared)
        except ValueError:
            pass
    if isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(error, PermissionError):
        return ErrorKind.AUTHORIZATION
    if isinstance(error, ConnectionError):
        return ErrorKind.NETWORK
    if isinstance(error, FileNotFoundError | LookupError):
        return ErrorKind.NOT_FOUND
    if isinstance(error, ValueError | TypeError):
        return ErrorKind.VALIDATION
    return ErrorKind.INTERNAL


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The outcome of `RetryPolicy.decide`.

    Attributes:
        retry: whether another attempt should run.
        delay_s: seconds to wait before it (0 when not retrying).
        reason: why, for logs ("retryable network error", "attempts exhausted", ...).
    """

    retry: bool
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how fast to retry a failed attempt.

    Attributes:
        max_attempts: total attempts including the first (>= 1).
        initial_delay: seconds before the second attempt.
        max_delay: cap on any delay, seconds.
        backoff_multiplier: growth factor per attempt (>= 1).
        jitter: fraction of the delay added or removed at random (0..1).
        retry_on: error kinds that are retried.
        dont_retry_on: error kinds never retried (wins over retry_on).
        retry_on_timeout: whether an attempt the engine timed out is retried.
    """

    max_attempts: int = 5
    initial_delay: float = 2.0
    max_delay: float = 300.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.1
    retry_on: frozenset[ErrorKind] = RETRYABLE_BY_DEFAULT
    dont_retry_on: frozenset[ErrorKind] = NEVER_RETRIED_BY_DEFAULT
    retry_on_timeout: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            problems.append("delays must be >= 0 seconds")
        if self.max_delay < self.initial_delay:
            problems.append("max_delay must be >= initial_delay")
        if self.backoff_multiplier < 1:
            problems.append("backoff_multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            problems.append("jitter must be between 0 and 1")
        if problems:
            raise ConfigError("invalid RetryPolicy: " + "; ".join(problems))
        object.__setattr__(self, "retry_on", frozenset(ErrorKind(k) for k in self.retry_on))
        object.__setattr__(
            self, "dont_retry_on", frozenset(ErrorKind(k) for k in self.dont_retry_on)
        )

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def is_retryable(self, kind: ErrorKind) -> bool:
        """Whether errors of `kind` may be retried at all."""
        if kind is ErrorKind.TIMEOUT and not self.retry_on_timeout:
            return False
        return kind not in self.dont_retry_on and kind in self.retry_on

    def delay(self, attempt: int, seed: str = "") -> float:
        """Seconds to wait after failed attempt `attempt` (1-based), with jitter."""
        base = min(self.max_delay, self.initial_delay * self.backoff_multiplier ** (attempt - 1))
        if not self.jitter or not base:
            return base
        digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        return max(0.0, min(self.max_delay, base * (1 + self.jitter * (2 * unit - 1))))

    def decide(self, attempt: int, kind: ErrorKind, seed: str = "") -> RetryDecision:
        """Whether to retry after attempt `attempt` failed with `kind`, and when."""
        if not self.is_retryable(kind):
            return RetryDecision(False, 0.0, f"{kind.value} errors are not retried")
        if attempt >= self.max_attempts:
            return RetryDecision(False, 0.0, f"attempts exhausted ({attempt}/{self.max_attempts})")
        return RetryDecision(True, self.delay(attempt, seed), f"retryable {kind.value} error")

    def to_dict(self) -> dict[str, object]:
        """Plain parameters, JSON-ready (how a run's plan records the policy)."""
        return {
            "max_attempts": self.max_attempts,
            "initial_delay": self.initial_delay,
            "max_delay": self.max_delay,
            "backoff_multiplier": self.backoff_multiplier,
            "jitter": self.jitter,
            "retry_on": sorted(k.value for k in self.retry_on),
            "dont_retry_on": sorted(k.value for k in self.dont_retry_on),
            "retry_on_timeout": self.retry_on_timeout,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RetryPolicy:
        """The policy `to_dict` gave; a parameter it lacks takes its default.

        Raises:
            ConfigError: the parameters make no valid policy.
            ValueError: an error kind is unknown.
        """
        params = {name: raw[name] for name in _SCALARS if name in raw}
        for name in ("retry_on", "dont_retry_on"):
            if name in raw:
                params[name] = frozenset(ErrorKind(k) for k in raw[name])
        return cls(**params)

    def to_json(self) -> str:
        """`to_dict` as canonical JSON (sorted keys): the form a task row stores."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RetryPolicy:
        """The policy `to_json` gave (see `from_dict`)."""
        return cls.from_dict(json.loads(text))


#: The parameters of `RetryPolicy` that are plain JSON values.
_SCALARS = (
    "max_attempts",
    "initial_delay",
    "max_delay",
    "backoff_multiplier",
    "jitter",
    "retry_on_timeout",
)
