"""Identifiers: ULIDs for events and attempts, dual IDs for dispatches and timers.

A dispatch has an internal, readable id and an API-safe hashed id used as the
queue's task name (Cloud Tasks names allow only ``[A-Za-z0-9_-]``)::

    dispatch_id   = "dispatch:{tenant}:{workspace}:{run}:{task}:{attempt}"
    cloud_task_id = "d_" + sha256(dispatch_id)

Timers follow the same pattern with ``timer:`` / ``t_``. Both are deterministic, so a
re-emitted dispatch or timer maps to the same queue task and the queue's
already-exists answer deduplicates it.
"""

from __future__ import annotations

import hashlib
import os
import random
import time

#: The tenant and the workspace used when none is named (the embedded default).
DEFAULT_TENANT = "default"
DEFAULT_WORKSPACE = "default"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Ids need uniqueness, not secrecy: a private generator seeded from the OS (os.urandom
# costs tens of microseconds on some VMs), reseeded in forked children so two
# processes never draw the same sequence.
_RNG = random.Random(os.urandom(32))


def _reseed() -> None:
    _RNG.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


#: Every 10-bit group as its two Crockford characters: a ULID is 13 lookups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


def new_ulid() -> str:
    """A fresh ULID string: 48-bit millisecond time + 80 random bits, Crockford base32.

    Written out here because ids are made on the hot path (several per task) and a
    general ULID object costs ~10x more; `python-ulid` parses what this produces.
    """
    value = (time.time_ns() // 1_000_000) << 80 | _RNG.getrandbits(80)
    p = _PAIRS
    return "".join(
        (
            p[value >> 120], p[value >> 110 & 1023], p[value >> 100 & 1023],
            p[value >> 90 & 1023], p[value >> 80 & 1023], p[value >> 70 & 1023],
            p[value >> 60 & 1023], p[value >> 50 & 1023], p[value >> 40 & 1023],
            p[value >> 30 & 1023], p[value >> 20 & 1023], p[value >> 10 & 1023],
            p[value & 1023],
        )
    )  # fmt: skip


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dispatch_id(tenant_id: str, workspace_id: str, run_id: str, task_key: str, attempt: int) -> str:
    """The internal dispatch id of one attempt of one task."""
    return f"dispatch:{tenant_id}:{workspace_id}:{run_id}:{task_key}:{attempt}"


def cloud_task_id(dispatch: str) -> str:
    """The API-safe queue task name for a dispatch id."""
    return "d_" + _sha(dispatch)


def timer_id(
    tenant_id: str, workspace_id: str, run_id: str, task_key: str, attempt: int, kind: str
) -> str:
    """The internal id of the timer of `kind` for one attempt of one task."""
    return f"timer:{tenant_id}:{workspace_id}:{run_id}:{task_key}:{attempt}:{kind}"


def timer_scope(timer: str) -> tuple[str, str]:
    """The (tenant, workspace) a timer id belongs to.

    Raises:
        ValueError: `timer` is not a timer id.
    """
    parts = timer.split(":")
    if len(parts) < 7 or parts[0] != "timer" or not parts[1] or not parts[2]:
        raise ValueError(f"not a timer id: {timer!r}")
    return parts[1], parts[2]


def timer_task_id(timer: str) -> str:
    """The API-safe queue task name for a timer id."""
    return "t_" + _sha(timer)


def run_id_for_key(tenant_id: str, workspace_id: str, idempotency_key: str) -> str:
    """A deterministic run id for an idempotency key ("r_" + 32 hex characters)."""
    return "r_" + _sha(f"{tenant_id}\x00{workspace_id}\x00{idempotency_key}")[:32]
