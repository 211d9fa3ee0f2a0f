"""Dispatchers hand task requests to an execution backend under deterministic ids.

`Dispatcher` is the protocol; `LocalPoolDispatcher` runs tasks in-process (threads
or processes). Cloud Tasks and Celery implementations follow the same protocol.
"""

from __future__ import annotations

from servo.dispatch.base import Dispatcher, EnqueueOutcome
from servo.engine.request import InputRef, TaskRequest

__all__ = ["Dispatcher", "EnqueueOutcome", "InputRef", "TaskRequest"]
