"""What the local Cloud Tasks server answers when it refuses a call.

The store raises `ApiError` with a gRPC status name; the service turns it into that
status, which the official client raises as the matching
``google.api_core.exceptions`` class (ALREADY_EXISTS -> ``AlreadyExists``, ...).
The store stays free of gRPC so it can be driven directly by tests.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """The gRPC status codes the server uses (names of ``grpc.StatusCode``)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"


class ApiError(Exception):
    """A call refused with `code`; the message is what the client shows."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
