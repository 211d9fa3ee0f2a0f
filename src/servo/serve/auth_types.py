"""What authenticating a `servo serve` request yields: a `Principal`, or an error.

```
ServoError
├── AuthError        the request is not authenticated: the app answers 401
└── AuthUnavailable  the issuer's keys could not be fetched: the app answers 503, so
                     Cloud Tasks retries the push instead of dropping it as refused
```

Messages never carry the token, the signature or the secret: they are logged and may
be sent back to the caller. `AuthError.reason` is a short, fixed vocabulary: it is
the `reason` label of ``servo_auth_failures_total`` and the field the app may return.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from servo.errors import ServoError


class AuthMethod(StrEnum):
    """How a request proved who sent it."""

    #: An OIDC ID token in ``Authorization: Bearer``, as Cloud Tasks attaches it.
    OIDC = "oidc"
    #: An HMAC-SHA256 signature of the body in ``X-Servo-Signature`` (Celery edge).
    HMAC = "hmac"


class AuthReason(StrEnum):
    """Why a request was refused (the ``reason`` metric label: keep it small)."""

    MISSING_CREDENTIALS = "missing_credentials"
    BAD_SIGNATURE = "bad_signature"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN_KEY = "unknown_key"
    ACCOUNT_NOT_ALLOWED = "account_not_allowed"
    EMAIL_NOT_VERIFIED = "email_not_verified"
    REPLAYED = "replayed"
    STALE_TIMESTAMP = "stale_timestamp"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent an authenticated request.

    Attributes:
        method: the method that authenticated it.
        subject: the token's verified email for OIDC; ``"hmac"`` for HMAC (the
            shared secret names no one in particular).
    """

    method: AuthMethod
    subject: str


class AuthError(ServoError):
    """The request is not authenticated (HTTP 401).

    Attributes:
        reason: the machine-readable cause.
        method: the method that was tried, or None when no credentials were found.
    """

    def __init__(self, reason: AuthReason, detail: str, method: AuthMethod | None = None) -> None:
        self.reason = reason
        self.method = method
        super().__init__(f"not authenticated ({reason}): {detail}")


class AuthUnavailable(ServoError):
    """The issuer's signing keys could not be fetched (HTTP 503, retry later).

    Not a 401: the request may be perfectly valid, and a 503 tells Cloud Tasks to
    retry it with backoff rather than count it as refused.
    """
