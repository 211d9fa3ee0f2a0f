"""OIDC ID tokens, as Cloud Tasks attaches them to each push (``Authorization: Bearer``).

A token is accepted when, in this order:

1. its header names ``alg: RS256`` (nothing else: ``none`` and ``HS256`` signed with
   the public key are the classic algorithm-confusion forgeries) and a `kid`;
2. the issuer's key set (JWKS) holds that `kid` and the signature verifies with it
   (PyJWT does the cryptography, with the algorithm pinned by the key);
3. `iss` is one of the configured issuers and `aud` is the configured audience;
4. `exp`, `iat` (required) and `nbf` (if present) hold at this server's clock, with
   `clock_skew_s` of tolerance either way;
5. `email_verified` is true and, when an allow-list is configured, `email` is on it.

Key set cache (`JwksCache`): fetched on first use, kept for the response's
``Cache-Control: max-age`` (1 h without one, clamped to [1 min, 1 day]). A token
whose `kid` is unknown forces one refetch (the issuer rotated its keys), unless the
set was fetched less than `min_refetch_interval_s` ago: at most one such refetch per
interval for the whole process, so tokens with random kids cannot make us hammer
the issuer. A failed fetch raises
`AuthUnavailable` (the app answers 503, Cloud Tasks retries) and is not retried for
`failure_backoff_s`; meanwhile an expired key set is still used for up to
`stale_if_error_s` (keys rotate over weeks and stay published well after), so a blip
at the issuer does not refuse every push.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from servo.observability.logging import get_logger
from servo.serve.auth_types import AuthError, AuthMethod, AuthReason, AuthUnavailable, Principal

log = get_logger(__name__)

#: The only signing algorithm accepted (Google signs ID tokens with it).
ALGORITHM = "RS256"
#: Key set lifetime when the response has no usable ``Cache-Control: max-age``.
DEFAULT_TTL_S = 3600.0
MIN_TTL_S = 60.0
MAX_TTL_S = 86_400.0
#: Seconds one JWKS request may take.
FETCH_TIMEOUT_S = 5.0
#: A bearer value longer than this is refused unparsed (Google ID tokens are ~1 KiB).
MAX_TOKEN_CHARS = 16_384

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\b", re.IGNORECASE)

# PyJWT's verdicts, most specific first (InvalidSignatureError is a DecodeError).
_TRANSLATED: tuple[tuple[type[jwt.PyJWTError], AuthReason, str], ...] = (
    (jwt.InvalidSignatureError, AuthReason.BAD_SIGNATURE, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, AuthReason.BAD_SIGNATURE, "token algorithm is not RS256"),
    (jwt.InvalidKeyError, AuthReason.BAD_SIGNATURE, "the signing key is not acceptable"),
    (jwt.InvalidAudienceError, AuthReason.WRONG_AUDIENCE, "token aud is not worker.oidc_audience"),
    (jwt.InvalidIssuerError, AuthReason.WRONG_ISSUER, "token iss is not in worker.oidc_issuers"),
    (jwt.MissingRequiredClaimError, AuthReason.MALFORMED, "token lacks exp, iat, iss or aud"),
)


def cache_ttl(cache_control: str | None) -> float:
    """Seconds to keep a key set, from its response's ``Cache-Control`` header."""
    if not cache_control:
        return DEFAULT_TTL_S
    if _NO_CACHE.search(cache_control):
        return MIN_TTL_S
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return DEFAULT_TTL_S
    return min(MAX_TTL_S, max(MIN_TTL_S, float(match.group(1))))


def _signing_keys(document: Any) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document, by kid; other keys are skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            # The algorithm is pinned here, so a token cannot choose another one.
            keys[kid] = jwt.PyJWK(entry, algorithm=ALGORITHM)
        except jwt.PyJWTError:
            log.warning("serve.auth.jwks_key_skipped", kid=kid)
    return keys


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: Mapping[str, jwt.PyJWK]
    expires_at: float


class JwksCache:
    """The issuer's signing keys, fetched with httpx and cached (see the module doc).

    Args:
        url: the JWKS URL (``worker.oidc_jwks_url``).
        http: the client that fetches it.
        clock: seconds; the cache's deadlines are measured with it.
        min_refetch_interval_s: at least this long between refetches forced by an
            unknown kid.
        failure_backoff_s: no fetch for this long after a failed one.
        stale_if_error_s: how long past its expiry a key set may still be used while
            fetching a new one fails.
    """

    def __init__(
        self,
        url: str,
        http: httpx.Client,
        *,
        clock: Callable[[], float],
        min_refetch_interval_s: float = 30.0,
        failure_backoff_s: float = 5.0,
        stale_if_error_s: float = 6 * 3600.0,
    ) -> None:
        self.url = url
        self._http = http
        self._clock = clock
        self._min_refetch_interval_s = min_refetch_interval_s
        self._failure_backoff_s = failure_backoff_s
        self._stale_if_error_s = stale_if_error_s
        self._lock = threading.Lock()
        self._set: _KeySet | None = None
        self._next_fetch_at = float("-inf")  # after a failure: not before
        self._next_forced_at = float("-inf")  # a refetch for an unknown kid: not before

    def key(self, kid: str) -> jwt.PyJWK:
        """The signing key named `kid`, refetching the set once if it is unknown.

        Raises:
            AuthError: unknown_key, even after a refetch (or one was made too recently).
            AuthUnavailable: the key set could not be fetched.
        """
        found = self._current().get(kid)
        if found is None:
            found = self._refetch_for(kid).get(kid)
        if found is None:
            raise AuthError(
                AuthReason.UNKNOWN_KEY, "token kid is not among the issuer's keys", AuthMethod.OIDC
            )
        return found

    def _current(self) -> Mapping[str, jwt.PyJWK]:
        current = self._set
        if current is not None and self._clock() < current.expires_at:
            return current.keys  # the fast path takes no lock
        with self._lock:
            now = self._clock()
            current = self._set
            if current is not None and now < current.expires_at:
                return current.keys  # another request refreshed it meanwhile
            try:
                if now < self._next_fetch_at:
                    raise AuthUnavailable(
                        f"signing keys from {self.url} unavailable: the last fetch failed"
                    )
                return self._fetch(now).keys
            except AuthUnavailable:
                if current is not None and now < current.expires_at + self._stale_if_error_s:
                    log.warning("serve.auth.jwks_stale", url=self.url)
                    return current.keys
                raise

    def _refetch_for(self, kid: str) -> Mapping[str, jwt.PyJWK]:
        with self._lock:
            current = self._set
            if current is not None and kid in current.keys:
                return current.keys  # another request already refetched it
            now = self._clock()
            if now < self._next_forced_at or now < self._next_fetch_at:
                return current.keys if current is not None else {}
            return self._fetch(now).keys

    def _fetch(self, now: float) -> _KeySet:
        """Fetch the key set (lock held)."""
        # A set fetched moments ago is current: a kid missing from it is most likely
        # made up (issuers publish new keys well before signing with them).
        self._next_forced_at = now + self._min_refetch_interval_s
        try:
            response = self._http.get(self.url, timeout=FETCH_TIMEOUT_S)
            response.raise_for_status()
            keys = _signing_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            self._next_fetch_at = now + self._failure_backoff_s
            log.warning("serve.auth.jwks_fetch_failed", url=self.url, error=type(exc).__name__)
            raise AuthUnavailable(
                f"cannot fetch signing keys from {self.url}: {type(exc).__name__}"
            ) from exc
        if not keys:
            self._next_fetch_at = now + self._failure_backoff_s
            raise AuthUnavailable(f"{self.url} publishes no RS256 signing key")
        ttl = cache_ttl(response.headers.get("cache-control"))
        self._set = _KeySet(keys, now + ttl)
        log.info("serve.auth.jwks_fetched", url=self.url, keys=len(keys), ttl_s=ttl)
        return self._set


def _instant(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(AuthReason.MALFORMED, f"token {name} is not a number", AuthMethod.OIDC)
    return float(value)


class OidcVerifier:
    """Verifies Google-style OIDC ID tokens (see the module doc for the checks).

    Args:
        audience: the expected `aud` (``worker.oidc_audience``).
        issuers: accepted `iss` values.
        keys: the issuer's key set.
        clock: unix seconds.
        clock_skew_s: tolerance on `exp`, `iat` and `nbf`.
        allowed_accounts: emails whose tokens are accepted; empty: any verified email.
    """

    def __init__(
        self,
        audience: str,
        issuers: Collection[str],
        keys: JwksCache,
        *,
        clock: Callable[[], float],
        clock_skew_s: float = 30.0,
        allowed_accounts: Collection[str] = (),
    ) -> None:
        if not audience or not issuers:
            raise ValueError("an OIDC verifier needs an audience and at least one issuer")
        self.audience = audience
        self.issuers = tuple(issuers)
        self.keys = keys
        self.clock_skew_s = clock_skew_s
        self.allowed_accounts = frozenset(a.strip().lower() for a in allowed_accounts)
        self._clock = clock

    def verify(self, token: str) -> Principal:
        """Check `token` and return the verified email it carries.

        Raises:
            AuthError: the token is refused (the reason says which check failed).
            AuthUnavailable: the issuer's keys could not be fetched.
        """
        claims = self._verified_claims(token)
        self._check_times(claims)
        email = claims.get("email")
        verified = claims.get("email_verified")
        if not isinstance(email, str) or not email or verified not in (True, "true"):
            raise AuthError(
                AuthReason.EMAIL_NOT_VERIFIED, "token carries no verified email", AuthMethod.OIDC
            )
        if self.allowed_accounts and email.lower() not in self.allowed_accounts:
            raise AuthError(
                AuthReason.ACCOUNT_NOT_ALLOWED,
                f"{email} is not in worker.allowed_service_accounts",
                AuthMethod.OIDC,
            )
        return Principal(AuthMethod.OIDC, email)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(AuthReason.MALFORMED, "bearer token is too long", AuthMethod.OIDC)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(
                AuthReason.MALFORMED, "bearer value is not a JWT", AuthMethod.OIDC
            ) from exc
        if header.get("alg") != ALGORITHM:
            raise AuthError(
                AuthReason.BAD_SIGNATURE, "only RS256-signed tokens are accepted", AuthMethod.OIDC
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(AuthReason.UNKNOWN_KEY, "token header has no kid", AuthMethod.OIDC)
        key = self.keys.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuers,
                # Times are checked by `_check_times` against our (injectable) clock.
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            for kind, reason, detail in _TRANSLATED:
                if isinstance(exc, kind):
                    raise AuthError(reason, detail, AuthMethod.OIDC) from exc
            raise AuthError(
                AuthReason.MALFORMED, "token cannot be decoded", AuthMethod.OIDC
            ) from exc
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now, skew = self._clock(), self.clock_skew_s
        expires = _instant(claims, "exp")
        if expires is not None and expires <= now - skew:
            raise AuthError(AuthReason.EXPIRED, "token has expired", AuthMethod.OIDC)
        for name in ("iat", "nbf"):
            instant = _instant(claims, name)
            if instant is not None and instant > now + skew:
                raise AuthError(
                    AuthReason.NOT_YET_VALID, f"token {name} is in the future", AuthMethod.OIDC
                )
