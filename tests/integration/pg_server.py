"""The suite's PostgreSQL server: moved to `servo.testing.postgres`, re-exported here.

See that module for the resolution order (``SERVO_TEST_DATABASE_URL``, the local
server, a throwaway cluster).
"""

from __future__ import annotations

from servo.testing.postgres import (
    LOCAL_URL,
    NoServer,
    ThrowawayCluster,
    answers,
    find_server,
    start_throwaway,
)

__all__ = ["LOCAL_URL", "NoServer", "ThrowawayCluster", "answers", "find_server", "start_throwaway"]
