"""The JSON answers every `servo serve` route shares, in one place so they stay alike.

Errors are ``{"error": <kind>, ...}`` with a small fixed vocabulary of kinds; a
validation error is SPEC §9's shape (`validation_error`). No answer ever carries an
exception message from a dependency: those may hold URLs, paths or credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse


def error(
    status: int,
    kind: str,
    *,
    retry_after_s: int | None = None,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    """An error answer ``{"error": kind, **fields}``.

    Args:
        status: the HTTP status.
        kind: the error's kind (``unauthenticated``, ``rate_limited``, ...).
        retry_after_s: sets ``Retry-After`` (429 and 503: Cloud Tasks slows down).
        headers: further headers.
        **fields: further body fields (``reason``, ``message``).
    """
    all_headers = dict(headers or {})
    if retry_after_s is not None:
        all_headers["Retry-After"] = str(max(1, int(retry_after_s)))
    return JSONResponse({"error": kind, **fields}, status_code=status, headers=all_headers)


def validation_error(details: Sequence[Mapping[str, str]]) -> JSONResponse:
    """SPEC §9's answer to input that failed validation (400).

    Args:
        details: one ``{"field", "code", "message"}`` per problem found.
    """
    return error(
        400, "validation_error", message="Validation failed", details=[dict(d) for d in details]
    )


def not_implemented(name: str) -> JSONResponse:
    """The answer of an ``/internal/*`` route no handler was plugged for (501)."""
    return error(
        501,
        "not_implemented",
        message=f"POST /internal/{name} is not implemented by this servo serve",
    )
