"""How the local Cloud Tasks server behaves where tests want a say."""

from __future__ import annotations

from dataclasses import dataclass

#: Cloud Tasks remembers a task's name this long after it ran or was deleted.
DEDUP_WINDOW_S = 3600.0
#: `schedule_time` may be at most this far ahead.
MAX_SCHEDULE_AHEAD_S = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Options of `LocalCloudTasks`.

    Attributes:
        dedup_window_s: seconds a task name stays taken after its task ran, gave up or
            was deleted (Cloud Tasks: about an hour); creating it again is
            ALREADY_EXISTS. A task that still exists always holds its name.
        auto_create_queues: create a queue with default limits when a task is created
            in a queue that does not exist (off: NOT_FOUND, as the real service).
        issuer: ``iss`` of the OIDC tokens pushes carry.
        token_lifetime_s: lifetime of those tokens (Google's: one hour).
        default_dispatch_deadline_s: a push's total timeout when the task sets none.
        min_dispatch_deadline_s: shortest `dispatch_deadline` accepted (Cloud Tasks:
            15 s; tests lower it to exercise the deadline quickly).
        max_dispatch_deadline_s: longest `dispatch_deadline` accepted (30 min).
        max_schedule_ahead_s: how far ahead `schedule_time` may be (30 days).
        grpc_workers: threads serving gRPC calls.
        max_connections: HTTP connections the pusher keeps open at most.
    """

    dedup_window_s: float = DEDUP_WINDOW_S
    auto_create_queues: bool = False
    issuer: str = "https://accounts.google.com"
    token_lifetime_s: float = 3600.0
    default_dispatch_deadline_s: float = 600.0
    min_dispatch_deadline_s: float = 15.0
    max_dispatch_deadline_s: float = 1800.0
    max_schedule_ahead_s: float = MAX_SCHEDULE_AHEAD_S
    grpc_workers: int = 8
    max_connections: int = 200
