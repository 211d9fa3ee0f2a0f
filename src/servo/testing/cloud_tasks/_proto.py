"""The ``google-cloud-tasks`` types, loaded where the type checker does not follow.

Once mypy analyses the typed ``google.cloud.tasks_v2`` package it takes the
``google.cloud`` namespace as known and then refuses ``from google.cloud import
storage`` (an untyped package) elsewhere in Servo. The proto-plus types are dynamic
anyway (fields are resolved at run time), so here they are plain ``Any`` to the type
checker, named by aliases so signatures still say what travels.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeAlias

#: ``google.cloud.tasks_v2``.
tasks_v2: Any = importlib.import_module("google.cloud.tasks_v2")


def transports() -> Any:
    """``google.cloud.tasks_v2.services.cloud_tasks.transports`` (gRPC transport)."""
    return importlib.import_module("google.cloud.tasks_v2.services.cloud_tasks.transports")


#: ``tasks_v2.CloudTasksClient``.
Client: TypeAlias = Any
#: ``tasks_v2.Task``.
Task: TypeAlias = Any
#: ``tasks_v2.Queue``.
Queue: TypeAlias = Any
#: ``tasks_v2.HttpRequest``.
HttpRequest: TypeAlias = Any
#: A request or response message of the service.
Message: TypeAlias = Any
