"""Test doubles shipped with Servo: a fake task queue with Cloud Tasks semantics.

Use them to test code that dispatches work without a real queue.
"""

from __future__ import annotations

from servo.testing.queue import FakeTaskQueue

__all__ = ["FakeTaskQueue"]
