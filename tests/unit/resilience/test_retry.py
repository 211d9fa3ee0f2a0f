"""RetryPolicy: defaults, classification, backoff with deterministic jitter."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servo.errors import ConfigError
from servo.resilience.retry import ErrorKind, RetryPolicy, classify


def test_defaults_match_the_spec() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_delay, policy.max_delay) == (5, 2.0, 300.0)
    assert (policy.backoff_multiplier, policy.jitter) == (2.0, 0.1)
    for kind in ("network", "timeout", "rate_limit", "unavailable", "internal"):
        assert policy.is_retryable(ErrorKind(kind))
    for kind in ("authentication", "authorization", "validation", "not_found"):
        assert not policy.is_retryable(ErrorKind(kind))


def test_classification_of_builtin_and_declared_errors() -> None:
    class Throttled(Exception):
        error_kind = "rate_limit"

    assert classify(TimeoutError()) is ErrorKind.TIMEOUT
    assert classify(ConnectionResetError()) is ErrorKind.NETWORK
    assert classify(PermissionError()) is ErrorKind.AUTHORIZATION
    assert classify(KeyError("x")) is ErrorKind.NOT_FOUND
    assert classify(ValueError("bad")) is ErrorKind.VALIDATION
    assert classify(RuntimeError("flaky")) is ErrorKind.INTERNAL
    assert classify(Throttled()) is ErrorKind.RATE_LIMIT


def test_exponential_backoff_is_capped_without_jitter() -> None:
    policy = RetryPolicy(initial_delay=2, max_delay=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_decide_stops_when_attempts_are_exhausted_or_kind_is_not_retryable() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0)
    assert policy.decide(1, ErrorKind.NETWORK).retry
    assert policy.decide(2, ErrorKind.NETWORK).delay_s == 4
    assert not policy.decide(3, ErrorKind.NETWORK).retry
    assert "not retried" in policy.decide(1, ErrorKind.VALIDATION).reason
    assert not RetryPolicy(retry_on_timeout=False).is_retryable(ErrorKind.TIMEOUT)


@given(attempt=st.integers(1, 30), seed=st.text(max_size=20))
def test_jitter_is_bounded_and_deterministic(attempt: int, seed: str) -> None:
    policy = RetryPolicy()
    delay = policy.delay(attempt, seed)
    base = min(300.0, 2.0 * 2.0 ** (attempt - 1))
    assert base * 0.9 - 1e-9 <= delay <= min(300.0, base * 1.1) + 1e-9
    assert policy.delay(attempt, seed) == delay


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_delay": 10, "max_delay": 5}, "max_delay"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(),
        RetryPolicy.none(),
        RetryPolicy(
            max_attempts=7,
            initial_delay=0.25,
            max_delay=9.0,
            backoff_multiplier=3.0,
            jitter=0.5,
            retry_on=frozenset({ErrorKind.NETWORK}),
            dont_retry_on=frozenset(),
            retry_on_timeout=False,
        ),
    ],
)
def test_a_policy_travels_as_one_value(policy: RetryPolicy) -> None:
    assert RetryPolicy.from_json(policy.to_json()) == policy
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
    assert policy.to_json() == json.dumps(policy.to_dict(), sort_keys=True)


def test_parameters_a_policy_lacks_take_their_defaults() -> None:
    assert RetryPolicy.from_dict({"max_attempts": 2}) == RetryPolicy(max_attempts=2)
    with pytest.raises(ValueError):
        RetryPolicy.from_dict({"retry_on": ["sunspots"]})
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy.from_dict({"max_attempts": 0})
