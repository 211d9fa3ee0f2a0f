"""One push as the store hands it to the pusher, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A task taken for one push (a snapshot: the stored task may change meanwhile).

    Attributes:
        queue: the queue's full name.
        task: the task's full name.
        url: target URL.
        method: HTTP method.
        headers: the task's own headers.
        body: request body.
        oidc_email: service account to mint an OIDC token for (None: no token).
        oidc_audience: the token's audience (None: the URL).
        deadline_s: the push's total timeout.
        retry_count: attempts before this one.
        execution_count: responses the handler gave before this one.
        previous_response: status of the last response, if any.
        eta: when the task was due (epoch seconds).
        version: which scheduling of the task this is; a result for an older one
            (the task was deleted or rescheduled meanwhile) is ignored.
    """

    queue: str
    task: str
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    oidc_email: str | None
    oidc_audience: str | None
    deadline_s: float
    retry_count: int
    execution_count: int
    previous_response: int | None
    eta: float
    version: int


@dataclass(frozen=True, slots=True)
class PushResult:
    """How a push ended.

    Attributes:
        outcome: the status as text ("200"), "timeout" or "error".
        status: the HTTP status (None: no response).
        retry_after_s: the response's ``Retry-After`` in seconds, if any.
    """

    outcome: str
    status: int | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        """A 2xx answer: the task is done."""
        return self.status is not None and 200 <= self.status < 300
