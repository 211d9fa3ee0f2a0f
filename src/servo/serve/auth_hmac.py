"""HMAC-signed requests: the shared-secret alternative to OIDC (the Celery edge).

The sender signs the timestamp and the exact body bytes::

    X-Servo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, b"<t>." + body)>

(`sign_hmac` builds that value). The receiver recomputes the MAC and compares it in
constant time, refuses a timestamp more than `window_s` from its own clock (a
captured request is useless after the window), and refuses a signature it has
already accepted within the window (a captured request is useless inside it too).

The replay cache (`ReplayCache`) lives in this process: a request replayed to
another instance of the service within the window is not detected. It keeps each
accepted signature until its timestamp leaves the window, and at most
`max_entries` of them; beyond that the oldest are dropped (and a warning logged)
rather than refusing honest traffic — only holders of the secret can add entries,
so filling it takes a sender far above any worker's capacity.

With a Redis rate-limit storage (``rate_limit.storage_url: redis://...``), the
instances share `RedisReplayCache` instead: a signature is remembered under its
digest with ``SET NX`` until its timestamp leaves the window, so a replay to any
instance is refused. When Redis cannot be reached the instance falls back to its
own cache for that request (logged, ``servo_hmac_replay_cache_errors_total``):
the timestamp window still holds, and every route a signature opens is idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.serve.auth_types import AuthError, AuthMethod, AuthReason, Principal

log = get_logger(__name__)

#: The request header that carries the signature.
SIGNATURE_HEADER = "X-Servo-Signature"

#: Accepted signatures remembered at most (about 100 bytes each).
DEFAULT_MAX_ENTRIES = 100_000

#: A header longer than this is refused unparsed (one t, a few v1 of 64 hex digits).
_MAX_HEADER_CHARS = 1024


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign_hmac(secret: str | bytes, body: bytes, now: float) -> str:
    """The `X-Servo-Signature` header value that signs `body` at time `now`.

    Args:
        secret: the shared secret (``worker.hmac_secret``); text is UTF-8 encoded.
        body: the exact bytes that will be sent.
        now: unix seconds (truncated to an integer).
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    timestamp = str(int(now))
    return f"t={timestamp},v1={_mac(key, timestamp, body)}"


def _parse(header: str) -> tuple[str, list[str]]:
    """The timestamp and v1 signatures of a header value.

    Raises:
        AuthError: malformed (no integer `t`, no `v1`, unknown shape).
    """
    if len(header) > _MAX_HEADER_CHARS:
        raise AuthError(AuthReason.MALFORMED, "signature header is too long", AuthMethod.HMAC)
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise AuthError(
                AuthReason.MALFORMED, "signature header is not t=...,v1=...", AuthMethod.HMAC
            )
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value.lower())
        # other schemes (v0, v2, ...) are ignored, so senders can add one before we do
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        raise AuthError(
            AuthReason.MALFORMED,
            "signature header has no integer t=<unix seconds>",
            AuthMethod.HMAC,
        )
    if not signatures:
        raise AuthError(AuthReason.MALFORMED, "signature header has no v1=", AuthMethod.HMAC)
    return timestamp, signatures


class ReplayCache:
    """Signatures accepted within the window, evicted once their timestamp leaves it.

    Args:
        max_entries: remembered signatures at most; the oldest go first beyond it.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def first_use(self, signature: str, expires_at: float, now: float) -> bool:
        """Remember `signature` until `expires_at`; False if it is already remembered."""
        with self._lock:
            self._evict(now)
            if signature in self._expiry:
                return False
            self._expiry[signature] = expires_at
            if len(self._expiry) > self._max_entries:
                self._expiry.popitem(last=False)
                log.warning("serve.auth.replay_cache_full", max_entries=self._max_entries)
            return True

    def _evict(self, now: float) -> None:
        # Insertion order is near expiry order (timestamps are near now); an entry
        # stuck behind a later one merely lives a little longer, which is safe.
        while self._expiry:
            signature, expires_at = next(iter(self._expiry.items()))
            if expires_at >= now:
                return
            del self._expiry[signature]


REPLAY_CACHE_ERRORS = metrics.counter(
    "servo_hmac_replay_cache_errors_total",
    "Shared HMAC replay-cache calls that failed (this instance's cache decided).",
    ["error_type"],
)


class RedisReplayCache:
    """Signatures accepted within the window, shared by every instance through Redis.

    Args:
        client: a ``redis.Redis`` client.
        fallback: decides when Redis cannot be reached (this instance's cache).
        prefix: key prefix of the remembered digests.
    """

    def __init__(
        self, client: Any, fallback: ReplayCache | None = None, prefix: str = "servo:hmac:"
    ) -> None:
        self._client = client
        self._fallback = fallback or ReplayCache()
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 1.0) -> RedisReplayCache:
        """A cache over the Redis at `url` (connect and socket timeouts `timeout_s`)."""
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client)

    def first_use(self, signature: str, expires_at: float, now: float) -> bool:
        """Remember `signature` until `expires_at`; False if any instance did already."""
        key = self._prefix + hashlib.sha256(signature.encode("utf-8")).hexdigest()
        ttl_ms = max(1, int((expires_at - now) * 1000))
        try:
            return bool(self._client.set(key, b"1", nx=True, px=ttl_ms))
        except Exception as exc:  # redis raises its own and OS errors
            REPLAY_CACHE_ERRORS.labels(type(exc).__name__).inc()
            log.warning(
                "serve.auth.replay_cache_unavailable",
                error_type=type(exc).__name__,
                recovery="this instance's replay cache decides until Redis answers",
            )
            return self._fallback.first_use(signature, expires_at, now)


class HmacVerifier:
    """Verifies `X-Servo-Signature` headers against one shared secret.

    Args:
        secret: the shared secret (``worker.hmac_secret``).
        window_s: seconds the timestamp may differ from now (``worker.hmac_window_s``).
        clock: unix seconds.
        replay_cache: accepted signatures (one per verifier by default).
    """

    def __init__(
        self,
        secret: str,
        window_s: float,
        *,
        clock: Callable[[], float],
        replay_cache: ReplayCache | RedisReplayCache | None = None,
    ) -> None:
        if not secret:
            raise ValueError("an HMAC secret must not be empty")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._secret = secret.encode("utf-8")
        self.window_s = window_s
        self._clock = clock
        self._replays = replay_cache or ReplayCache()

    @property
    def replay_scope(self) -> str:
        """Where accepted signatures are remembered: ``instance`` or ``shared``."""
        return "shared" if isinstance(self._replays, RedisReplayCache) else "instance"

    def verify(self, header: str, body: bytes) -> Principal:
        """Check the signature of `body`, its age, and that it is seen for the first time.

        Raises:
            AuthError: malformed, bad_signature, stale_timestamp or replayed.
        """
        timestamp, signatures = _parse(header)
        expected = _mac(self._secret, timestamp, body).encode("ascii")
        # bytes, not str: compare_digest refuses non-ASCII text, which a sender controls
        matched = next(
            (s for s in signatures if hmac.compare_digest(s.encode("utf-8"), expected)), None
        )
        if matched is None:
            raise AuthError(
                AuthReason.BAD_SIGNATURE, "HMAC signature does not match the body", AuthMethod.HMAC
            )
        now = self._clock()
        signed_at = int(timestamp)
        if abs(now - signed_at) > self.window_s:
            raise AuthError(
                AuthReason.STALE_TIMESTAMP,
                f"signature timestamp is more than {self.window_s:g}s from this server's clock",
                AuthMethod.HMAC,
            )
        if not self._replays.first_use(matched, signed_at + self.window_s, now):
            raise AuthError(AuthReason.REPLAYED, "this signature was already used", AuthMethod.HMAC)
        return Principal(AuthMethod.HMAC, "hmac")
