"""Rate limits of `servo serve`: per tenant on /execute, per IP on /metrics.

The shared-store tests run against the Redis at 127.0.0.1:6379 (CI starts one);
locally they are skipped when none answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from limits.storage import RedisStorage

from servo.config.settings import RateLimitSettings
from servo.errors import ConfigError
from servo.observability import metrics
from servo.resilience.clock import ManualClock
from servo.resilience.rate_limit import (
    Decision,
    RateLimitConfig,
    RateLimiter,
    mask_url,
    open_storage,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def memory_limiter(tenant_rps: float = 2, metrics_rpm: int = 3) -> RateLimiter:
    return RateLimiter.from_settings(
        RateLimitSettings(tenant_rps=tenant_rps, metrics_rpm=metrics_rpm)
    )


def rejections(limit: str) -> float:
    return metrics.sample("servo_rate_limit_rejections_total", {"limit": limit})


def test_one_tenant_exhausting_its_limit_does_not_limit_another() -> None:
    limiter = memory_limiter(tenant_rps=2)
    before = rejections("tenant")
    assert limiter.tenant("acme") == Decision(allowed=True, retry_after_s=0)
    assert limiter.tenant("acme").allowed
    assert limiter.tenant("acme") == Decision(allowed=False, retry_after_s=1)
    assert limiter.tenant("globex").allowed
    assert rejections("tenant") == before + 1


def test_metrics_are_limited_per_client_ip_with_retry_after_60() -> None:
    limiter = memory_limiter(metrics_rpm=3)
    before = rejections("metrics")
    assert all(limiter.metrics_client("10.0.0.1").allowed for _ in range(3))  # the burst
    assert limiter.metrics_client("10.0.0.1") == Decision(allowed=False, retry_after_s=60)
    assert limiter.metrics_client("10.0.0.2").allowed
    assert limiter.tenant("10.0.0.1").allowed  # the two limits count apart
    assert rejections("metrics") == before + 1


@pytest.mark.parametrize(
    ("rps", "expected"),
    [
        (10.0, "10 per 1 second"),
        (1, "1 per 1 second"),
        (0.5, "30 per 1 minute"),
        (2.5, "150 per 1 minute"),
        (0.001, "1 per 1 minute"),
    ],
)
def test_fractional_rates_become_per_minute_limits(rps: float, expected: str) -> None:
    assert str(RateLimitConfig(tenant_rps=rps).tenant_limit()) == expected


def test_zero_limits_are_refused_even_when_built_directly() -> None:
    with pytest.raises(ConfigError, match="SERVO_RATE_LIMIT_TENANT_RPS"):
        RateLimitConfig(tenant_rps=0)
    with pytest.raises(ConfigError, match="SERVO_RATE_LIMIT_METRICS_RPM"):
        RateLimitConfig(metrics_rpm=-1)
    with pytest.raises(ConfigError, match="SERVO_RATE_LIMIT_TENANT_RPS"):
        RateLimiter.from_settings(RateLimitSettings.model_construct(tenant_rps=0.0))


def test_memory_limits_are_per_instance() -> None:
    first, second = memory_limiter(tenant_rps=1), memory_limiter(tenant_rps=1)
    assert first.tenant("acme").allowed
    assert not first.tenant("acme").allowed
    assert second.tenant("acme").allowed


@pytest.mark.parametrize(
    "url", ["memcached://127.0.0.1:11211", "async+redis://127.0.0.1:6379", "mongodb://x", "nope"]
)
def test_an_unsupported_storage_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="SERVO_RATE_LIMIT_STORAGE_URL"):
        open_storage(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@127.0.0.1:9/0", "redis://:***@127.0.0.1:9/0"),
        ("redis://:hunter2@127.0.0.1:port/0", "redis://:***@127.0.0.1:port/0"),
    ],
)
def test_a_redis_that_cannot_be_used_is_a_config_error_without_its_password(
    url: str, shown: str
) -> None:
    with pytest.raises(ConfigError, match="SERVO_RATE_LIMIT_STORAGE_URL") as info:
        RateLimiter.from_settings(RateLimitSettings(storage_url=url))
    assert "hunter2" not in str(info.value)
    assert shown in str(info.value)


def test_urls_are_masked_for_logs() -> None:
    assert mask_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("rediss://user:pw@[::1]:6380") == "rediss://user:***@[::1]:6380"
    assert mask_url("redis://host:6379") == "redis://host:6379"
    assert mask_url("memory://") == "memory://"
    assert mask_url("redis://user@host") == "redis://user@host"


def test_describe_states_the_effective_limits_without_a_password() -> None:
    storage = open_storage("memory://")
    config = RateLimitConfig(tenant_rps=0.5, metrics_rpm=60, storage_url="redis://:pw@r:6379/0")
    described = RateLimiter(storage, config).describe()
    assert described["tenant"] == "30 per 1 minute"
    assert described["metrics_per_ip"] == "60 per 1 minute"
    assert (described["tenant_retry_after_s"], described["metrics_retry_after_s"]) == (1, 60)
    assert described["storage"] == "redis://:***@r:6379/0"
    assert described["scope"] == "global"
    assert "pw@" not in str(described)
    assert memory_limiter().describe()["scope"] == "per-instance"


def test_storage_errors_fail_open_counted_and_warned_once_per_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Built without the startup check: a Redis that went away after the start.
    gone = RedisStorage("redis://127.0.0.1:9/0", wrap_exceptions=True, socket_connect_timeout=0.2)
    clock = ManualClock()
    limiter = RateLimiter(gone, RateLimitConfig(tenant_rps=1, metrics_rpm=1), clock=clock)
    before = metrics.sample("servo_rate_limit_storage_errors_total")
    assert all(limiter.tenant("acme").allowed for _ in range(3))
    assert limiter.metrics_client("10.0.0.1").allowed
    assert metrics.sample("servo_rate_limit_storage_errors_total") == before + 4
    assert capsys.readouterr().err.count("rate_limit.storage_failed_open") == 1
    clock.advance(61)
    assert limiter.tenant("acme").allowed
    assert "suppressed_since_last=3" in capsys.readouterr().err
    assert not limiter.check()


def test_no_tenant_or_ip_appears_in_the_metrics_exposition() -> None:
    tenant, ip = f"tenant-{uuid.uuid4().hex}", "198.51.100.23"
    limiter = memory_limiter(tenant_rps=1, metrics_rpm=1)
    for _ in range(2):
        limiter.tenant(tenant)
        limiter.metrics_client(ip)
    exposition = metrics.render().decode()
    assert 'servo_rate_limit_rejections_total{limit="tenant"}' in exposition
    assert 'servo_rate_limit_rejections_total{limit="metrics"}' in exposition
    assert tenant not in exposition and ip not in exposition


# ------------------------------------------------------------------- real Redis
def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A namespace of this test's own in the shared Redis, removed afterwards."""
    if not _redis_answers():
        if os.environ.get("CI"):
            pytest.fail(f"no Redis answers at {REDIS_URL}; CI must start one")
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    prefix = f"servo-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_a_redis_storage_makes_the_limit_global_across_instances(key_prefix: str) -> None:
    settings = RateLimitSettings(tenant_rps=3, metrics_rpm=2, storage_url=REDIS_URL)
    first = RateLimiter.from_settings(settings, key_prefix=key_prefix)
    second = RateLimiter.from_settings(settings, key_prefix=key_prefix)
    assert first.check() and second.check()
    assert first.tenant("acme").allowed
    assert second.tenant("acme").allowed
    assert first.tenant("acme").allowed
    assert second.tenant("acme") == Decision(allowed=False, retry_after_s=1)
    assert first.tenant("globex").allowed
    assert first.metrics_client("10.0.0.1").allowed and second.metrics_client("10.0.0.1").allowed
    assert first.metrics_client("10.0.0.1") == Decision(allowed=False, retry_after_s=60)
    assert first.describe()["scope"] == "global"
