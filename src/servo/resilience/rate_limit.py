"""Rate limits of `servo serve` (SPEC.md §6), on the `limits` library.

Two limits, both **moving windows** (every hit is remembered for the window, so a
client gets the whole allowance at once — the burst — and then exactly the rate):

- ``tenant``: `/execute` requests per tenant, checked after authentication and
  before any expensive work. ``tenant_rps`` per second when it is a whole number;
  a fractional rate becomes ``round(rps * 60)`` per minute (at least 1), since
  `limits` counts whole hits. Refused with ``Retry-After: 1``.
- ``metrics``: `/metrics` scrapes per client IP, ``metrics_rpm`` per minute.
  Refused with ``Retry-After: 60``.

Storage (``rate_limit.storage_url``): ``memory://`` keeps the counts in this
process (each instance enforces the limit on its own); ``redis://`` or
``rediss://`` shares them between instances, making the limits global. Redis must
answer when the limiter is built — a typo fails at startup, not on the first
request.

When Redis fails later, the limiter **fails open**: the request is allowed, a
warning is logged (at most one every `_WARN_INTERVAL_S`) and
``servo_rate_limit_storage_errors_total`` counts it. A throttle protects capacity; it
guards no data. Refusing every request because the counter store is down would turn
a Redis outage into a full outage of the workers, while allowing them merely loses
throttling until Redis is back (authentication still applies, and the concurrency
cap of `worker.max_concurrency` still bounds the load).

Metrics: ``servo_rate_limit_rejections_total{limit}`` (limit: tenant | metrics) —
never a tenant or IP label, whose values are unbounded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.errors import ConfigurationError, StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from servo.errors import ConfigError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.resilience.clock import Clock, monotonic

if TYPE_CHECKING:
    from servo.config.settings import RateLimitSettings

log = get_logger(__name__)

REJECTIONS = metrics.counter(
    "servo_rate_limit_rejections_total",
    "Requests refused by a rate limit, by limit (tenant, metrics).",
    ["limit"],
)
STORAGE_ERRORS = metrics.counter(
    "servo_rate_limit_storage_errors_total",
    "Rate-limit checks that could not reach the storage and let the request through.",
)

#: Seconds a refused `/execute` caller should wait (SPEC.md §6).
TENANT_RETRY_AFTER_S = 1
#: Seconds a refused `/metrics` scraper should wait (SPEC.md §6).
METRICS_RETRY_AFTER_S = 60
#: Namespace of the limiter's keys in a shared store.
DEFAULT_KEY_PREFIX = "servo_rate_limit"
#: Seconds a Redis connection attempt and each Redis command may take: a throttle
#: must not make a request wait long for its verdict.
REDIS_TIMEOUT_S = 0.5

_SCHEMES = {"memory": "memory://", "redis": "redis://", "rediss": "rediss://"}
_ENV = "rate_limit.storage_url (SERVO_RATE_LIMIT_STORAGE_URL)"
_WARN_INTERVAL_S = 60.0


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by ``***``, fit for a log line."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


@dataclass(frozen=True, slots=True)
class Decision:
    """A rate limiter's verdict on one request.

    Attributes:
        allowed: the request may proceed.
        retry_after_s: the ``Retry-After`` to answer with when refused (0 when allowed).
    """

    allowed: bool
    retry_after_s: int


_ALLOWED = Decision(allowed=True, retry_after_s=0)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """The limits and where their counts live.

    Attributes:
        tenant_rps: `/execute` requests per second and tenant (> 0).
        metrics_rpm: `/metrics` requests per minute and client IP (> 0).
        storage_url: ``memory://``, ``redis://...`` or ``rediss://...``.
    """

    tenant_rps: float = 10.0
    metrics_rpm: int = 60
    storage_url: str = "memory://"

    def __post_init__(self) -> None:
        # The settings loader already refuses these; direct construction must too.
        if not self.tenant_rps > 0:
            raise ConfigError(
                f"rate_limit.tenant_rps (SERVO_RATE_LIMIT_TENANT_RPS): must be > 0, "
                f"got {self.tenant_rps}"
            )
        if not self.metrics_rpm > 0:
            raise ConfigError(
                f"rate_limit.metrics_rpm (SERVO_RATE_LIMIT_METRICS_RPM): must be > 0, "
                f"got {self.metrics_rpm}"
            )

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> RateLimitConfig:
        """From the ``rate_limit`` settings section (``SERVO_RATE_LIMIT_*``)."""
        return cls(settings.tenant_rps, settings.metrics_rpm, settings.storage_url)

    def tenant_limit(self) -> RateLimitItem:
        """The per-tenant limit: whole rates per second, fractional ones per minute."""
        if float(self.tenant_rps).is_integer():
            return RateLimitItemPerSecond(int(self.tenant_rps), 1)
        return RateLimitItemPerMinute(max(1, round(self.tenant_rps * 60)), 1)

    def metrics_limit(self) -> RateLimitItem:
        """The per-IP limit on `/metrics`."""
        return RateLimitItemPerMinute(self.metrics_rpm, 1)


def open_storage(url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> Storage:
    """The `limits` storage at `url`, checked to answer.

    Args:
        url: ``memory://``, ``redis://...`` or ``rediss://...``.
        key_prefix: namespace of the keys in a shared store.

    Raises:
        ConfigError: the scheme is not supported, or Redis does not answer.
    """
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"{_ENV}: unsupported storage {mask_url(url)!r}; use "
            + " or ".join(f"{prefix}..." for prefix in _SCHEMES.values())
        )
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if scheme != "memory":
        options |= {
            "key_prefix": key_prefix,
            "socket_connect_timeout": REDIS_TIMEOUT_S,
            "socket_timeout": REDIS_TIMEOUT_S,
        }
    try:
        storage = storage_from_string(url, **options)
    except (ConfigurationError, ValueError) as exc:
        password = urlsplit(url).password
        detail = str(exc).replace(password, "***") if password else str(exc)
        raise ConfigError(f"{_ENV}: cannot use {mask_url(url)!r}: {detail}") from None
    if not isinstance(storage, Storage):  # pragma: no cover - async schemes are refused above
        raise ConfigError(f"{_ENV}: {mask_url(url)!r} is not a synchronous storage")
    if not storage.check():
        raise ConfigError(
            f"{_ENV}: no answer from {mask_url(url)!r} (down, unreachable or refusing the "
            "credentials); start Redis, fix the URL, or use memory:// for per-instance limits"
        )
    return storage


class RateLimiter:
    """The `/execute` and `/metrics` rate limits of one `servo serve` process.

    Build it with `from_settings`; the constructor takes an opened storage (tests
    pass one that fails).

    Args:
        storage: where the counts live (`open_storage`).
        config: the limits.
        clock: monotonic seconds, to space the fail-open warnings.
    """

    def __init__(
        self,
        storage: Storage,
        config: RateLimitConfig,
        *,
        clock: Clock = monotonic,
    ) -> None:
        self.config = config
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._tenant_limit = config.tenant_limit()
        self._metrics_limit = config.metrics_limit()
        self._clock = clock
        self._warn_lock = threading.Lock()
        self._next_warning_at = float("-inf")
        self._suppressed = 0

    @classmethod
    def from_settings(
        cls, settings: RateLimitSettings, *, key_prefix: str = DEFAULT_KEY_PREFIX
    ) -> RateLimiter:
        """The limiter the ``rate_limit`` settings describe.

        Args:
            settings: the ``rate_limit`` section.
            key_prefix: namespace of the keys in a shared store.

        Raises:
            ConfigError: a limit is not positive, or the storage is unusable.
        """
        config = RateLimitConfig.from_settings(settings)
        return cls(open_storage(config.storage_url, key_prefix=key_prefix), config)

    def tenant(self, tenant_id: str) -> Decision:
        """Count one `/execute` request of `tenant_id`; refused beyond `tenant_rps`."""
        return self._hit("tenant", self._tenant_limit, tenant_id, TENANT_RETRY_AFTER_S)

    def metrics_client(self, ip: str) -> Decision:
        """Count one `/metrics` request from `ip`; refused beyond `metrics_rpm`."""
        return self._hit("metrics", self._metrics_limit, ip, METRICS_RETRY_AFTER_S)

    def check(self) -> bool:
        """Whether the storage answers (for the readiness probe)."""
        try:
            return bool(self._storage.check())
        except Exception:
            return False

    def describe(self) -> dict[str, object]:
        """The effective limits, for one startup log line (no password)."""
        return {
            "tenant": str(self._tenant_limit),
            "tenant_retry_after_s": TENANT_RETRY_AFTER_S,
            "metrics_per_ip": str(self._metrics_limit),
            "metrics_retry_after_s": METRICS_RETRY_AFTER_S,
            "strategy": "moving-window",
            "storage": mask_url(self.config.storage_url),
            "scope": "per-instance" if self.config.storage_url.startswith("memory") else "global",
        }

    def _hit(self, limit: str, item: RateLimitItem, key: str, retry_after_s: int) -> Decision:
        try:
            allowed = self._strategy.hit(item, limit, key)
        except StorageError as exc:
            self._storage_failed(limit, exc)
            return _ALLOWED
        if allowed:
            return _ALLOWED
        REJECTIONS.labels(limit).inc()
        return Decision(allowed=False, retry_after_s=retry_after_s)

    def _storage_failed(self, limit: str, exc: StorageError) -> None:
        """Count a storage failure; warn at most once per interval (Redis down = every call)."""
        STORAGE_ERRORS.inc()
        with self._warn_lock:
            now = self._clock()
            if now < self._next_warning_at:
                self._suppressed += 1
                return
            self._next_warning_at = now + _WARN_INTERVAL_S
            suppressed, self._suppressed = self._suppressed, 0
        log.warning(
            "rate_limit.storage_failed_open",
            limit=limit,
            storage=mask_url(self.config.storage_url),
            error=type(exc.storage_error).__name__,
            suppressed_since_last=suppressed,
        )
