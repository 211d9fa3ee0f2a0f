"""Resource names of the local Cloud Tasks server, checked like the real service does.

A queue is ``projects/{project}/locations/{location}/queues/{queue}`` (queue id:
letters, digits, hyphens, at most 100); a task is ``{queue}/tasks/{task}`` (task id:
letters, digits, hyphens, underscores, at most 500). Names the real service would
refuse are refused here too, so a client that passes locally is not surprised by
Google's INVALID_ARGUMENT later.
"""

from __future__ import annotations

import re

from servo.testing.cloud_tasks.errors import ApiError, Code

_LOCATION = r"projects/[A-Za-z0-9.:_-]+/locations/[A-Za-z0-9-]+"
_QUEUE = re.compile(rf"^({_LOCATION})/queues/([A-Za-z0-9-]{{1,100}})$")
_TASK = re.compile(rf"^({_LOCATION}/queues/[A-Za-z0-9-]{{1,100}})/tasks/([A-Za-z0-9_-]{{1,500}})$")
_PARENT = re.compile(rf"^{_LOCATION}$")


def check_location(parent: str) -> str:
    """`parent` if it is ``projects/{p}/locations/{l}``.

    Raises:
        ApiError: INVALID_ARGUMENT otherwise.
    """
    if not _PARENT.match(parent):
        raise ApiError(Code.INVALID_ARGUMENT, f"invalid location name {parent!r}")
    return parent


def check_queue(name: str) -> str:
    """`name` if it is a well-formed queue name.

    Raises:
        ApiError: INVALID_ARGUMENT otherwise.
    """
    if not _QUEUE.match(name):
        raise ApiError(
            Code.INVALID_ARGUMENT,
            f"invalid queue name {name!r}: expected projects/P/locations/L/queues/Q",
        )
    return name


def check_task(name: str, queue: str) -> str:
    """`name` if it is a well-formed task name inside `queue`.

    Raises:
        ApiError: INVALID_ARGUMENT otherwise.
    """
    match = _TASK.match(name)
    if match is None:
        raise ApiError(
            Code.INVALID_ARGUMENT,
            f"invalid task name {name!r}: expected {queue}/tasks/ID, ID of [A-Za-z0-9_-]",
        )
    if match.group(1) != queue:
        raise ApiError(Code.INVALID_ARGUMENT, f"task {name!r} is not in queue {queue!r}")
    return name


def location_of(queue: str) -> str:
    """The ``projects/{p}/locations/{l}`` part of a queue name."""
    return queue.rsplit("/queues/", 1)[0]


def short(name: str) -> str:
    """The last segment of a resource name (the id the push headers carry)."""
    return name.rsplit("/", 1)[-1]
