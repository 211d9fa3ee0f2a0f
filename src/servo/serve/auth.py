"""Authentication of `servo serve` requests, run before anything else (SPEC.md §5).

Two methods, either or both enabled by `WorkerSettings`:

- **OIDC** (``worker.oidc_audience``): ``Authorization: Bearer <ID token>`` as Cloud
  Tasks sends it; see `servo.serve.auth_oidc` for the checks.
- **HMAC** (``worker.hmac_secret``): ``X-Servo-Signature: t=...,v1=...`` over the
  body; see `servo.serve.auth_hmac`.

A request carrying the signature header is checked with HMAC (when enabled), else
its bearer token with OIDC (when enabled); one method is tried, never both, so a
forged signature cannot be rescued by a fallback. The outcome is a `Principal`, an
`AuthError` (401) or `AuthUnavailable` (503).

Every refusal is counted in ``servo_auth_failures_total{method,reason}`` (method
``none`` when no credentials were found; reason ``unavailable`` for
`AuthUnavailable`) and logged as one ``serve.auth.rejected`` warning with the
method, the reason and the client address: never the token nor the signature.

`authenticate` may block on a JWKS fetch (at most `auth_oidc.FETCH_TIMEOUT_S`, rarely:
once an hour): async handlers call it through a thread (``run_in_threadpool``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httpx

from servo.config.settings import WorkerSettings
from servo.errors import ConfigError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.serve.auth_hmac import SIGNATURE_HEADER, HmacVerifier, RedisReplayCache, sign_hmac
from servo.serve.auth_oidc import FETCH_TIMEOUT_S, JwksCache, OidcVerifier
from servo.serve.auth_types import (
    AuthError,
    AuthMethod,
    AuthReason,
    AuthUnavailable,
    Principal,
)

__all__ = [
    "SIGNATURE_HEADER",
    "AuthError",
    "AuthMethod",
    "AuthReason",
    "AuthUnavailable",
    "Authenticator",
    "Principal",
    "sign_hmac",
]

log = get_logger(__name__)

FAILURES = metrics.counter(
    "servo_auth_failures_total",
    "Requests refused by `servo serve` authentication, by method and reason.",
    ["method", "reason"],
)

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _check_jwks_url(url: str) -> None:
    """Refuse a JWKS URL anyone on the network path could answer in the issuer's place."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return
    raise ConfigError(
        f"worker.oidc_jwks_url (SERVO_WORKER_OIDC_JWKS_URL): {url!r} must be an https:// URL "
        "(plain http only on loopback, for tests)"
    )


class Authenticator:
    """Authenticates `servo serve` requests with OIDC, HMAC or both.

    Build it with `from_settings`; the constructor takes ready verifiers (tests and
    other composition roots).

    Args:
        oidc: the OIDC verifier, or None when bearer tokens are not accepted.
        hmac: the HMAC verifier, or None when signatures are not accepted.
        owned_http: an HTTP client this object made and closes in `close`.

    Raises:
        ConfigError: neither method is enabled.
    """

    def __init__(
        self,
        *,
        oidc: OidcVerifier | None = None,
        hmac: HmacVerifier | None = None,
        owned_http: httpx.Client | None = None,
    ) -> None:
        if oidc is None and hmac is None:
            raise ConfigError(
                "servo serve needs worker.oidc_audience (SERVO_WORKER_OIDC_AUDIENCE) "
                "or worker.hmac_secret (SERVO_WORKER_HMAC_SECRET)"
            )
        self._oidc = oidc
        self._hmac = hmac
        self._owned_http = owned_http

    @classmethod
    def from_settings(
        cls,
        worker: WorkerSettings,
        *,
        clock: Callable[[], float] = time.time,
        http: httpx.Client | None = None,
        replay_url: str | None = None,
    ) -> Authenticator:
        """The methods `worker` enables (an empty value counts as unset).

        Args:
            worker: the ``worker`` settings section.
            clock: unix seconds; token and signature times are checked against it.
            http: the client that fetches the JWKS; one is made (and closed by
                `close`) when None and OIDC is enabled.
            replay_url: a ``redis://`` URL: HMAC signatures are remembered there, for
                every instance (`RedisReplayCache`); otherwise in this process.

        Raises:
            ConfigError: neither method is enabled, or the OIDC settings are unusable.
        """
        oidc: OidcVerifier | None = None
        hmac: HmacVerifier | None = None
        owned: httpx.Client | None = None
        if worker.hmac_secret:
            shared = None
            if replay_url is not None and replay_url.startswith(("redis://", "rediss://")):
                shared = RedisReplayCache.from_url(replay_url)
            hmac = HmacVerifier(
                worker.hmac_secret, worker.hmac_window_s, clock=clock, replay_cache=shared
            )
        if worker.oidc_audience:
            if not worker.oidc_issuers:
                raise ConfigError(
                    "worker.oidc_issuers (SERVO_WORKER_OIDC_ISSUERS) is empty: "
                    "list the accepted token issuers"
                )
            _check_jwks_url(worker.oidc_jwks_url)
            if http is None:
                http = owned = httpx.Client(timeout=FETCH_TIMEOUT_S)
            keys = JwksCache(worker.oidc_jwks_url, http, clock=clock)
            oidc = OidcVerifier(
                worker.oidc_audience,
                worker.oidc_issuers,
                keys,
                clock=clock,
                clock_skew_s=worker.clock_skew_s,
                allowed_accounts=worker.allowed_service_accounts,
            )
        return cls(oidc=oidc, hmac=hmac, owned_http=owned)

    def authenticate(
        self, headers: Mapping[str, str], body: bytes, *, client: str | None = None
    ) -> Principal:
        """Who sent this request.

        Args:
            headers: the request headers (names in any case).
            body: the exact body bytes (HMAC signs them).
            client: the client address, for the refusal log line.

        Raises:
            AuthError: the request is not authenticated (answer 401).
            AuthUnavailable: the issuer's keys could not be fetched (answer 503).
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            return self._authenticate(lowered, body)
        except AuthError as exc:
            method = exc.method.value if exc.method is not None else "none"
            FAILURES.labels(method, exc.reason.value).inc()
            log.warning(
                "serve.auth.rejected", method=method, reason=exc.reason.value, client=client
            )
            raise
        except AuthUnavailable as exc:
            FAILURES.labels(AuthMethod.OIDC.value, "unavailable").inc()
            log.warning(
                "serve.auth.rejected",
                method=AuthMethod.OIDC.value,
                reason="unavailable",
                client=client,
                error=str(exc),
            )
            raise

    def _authenticate(self, headers: Mapping[str, str], body: bytes) -> Principal:
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature is not None and self._hmac is not None:
            return self._hmac.verify(signature, body)
        authorization = headers.get("authorization")
        if authorization is not None and self._oidc is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthError(
                    AuthReason.MALFORMED,
                    "Authorization is not 'Bearer <ID token>'",
                    AuthMethod.OIDC,
                )
            return self._oidc.verify(token)
        raise AuthError(AuthReason.MISSING_CREDENTIALS, f"send {self._accepted()}")

    def _accepted(self) -> str:
        accepted = []
        if self._oidc is not None:
            accepted.append("an OIDC ID token (Authorization: Bearer ...)")
        if self._hmac is not None:
            accepted.append(f"an HMAC signature ({SIGNATURE_HEADER})")
        return " or ".join(accepted)

    def describe(self) -> dict[str, object]:
        """The effective configuration, free of secrets, for one startup log line."""
        methods = [AuthMethod.OIDC.value] if self._oidc is not None else []
        methods += [AuthMethod.HMAC.value] if self._hmac is not None else []
        described: dict[str, object] = {"methods": methods}
        if self._oidc is not None:
            described["oidc"] = {
                "audience": self._oidc.audience,
                "issuers": list(self._oidc.issuers),
                "jwks_url": self._oidc.keys.url,
                "allowed_service_accounts": sorted(self._oidc.allowed_accounts) or "any verified",
                "clock_skew_s": self._oidc.clock_skew_s,
            }
        if self._hmac is not None:
            described["hmac"] = {
                "window_s": self._hmac.window_s,
                "replay_cache": self._hmac.replay_scope,
            }
        return described

    def close(self) -> None:
        """Close the HTTP client `from_settings` made (not one passed in)."""
        if self._owned_http is not None:
            self._owned_http.close()
