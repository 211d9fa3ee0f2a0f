"""Test doubles shipped with Servo, for testing code that runs on Servo.

- `MemoryObjectStore`: the object store contract, in memory.
- `ManualClock`: a clock that moves only when told to (`sleep` advances it).
- `FakeTaskQueue`: task names deduplicated like Cloud Tasks, in memory.
- `QueueDispatcher`: a dispatcher over that queue whose deliveries the test drives
  (`deliver`), held to the same contract as the local pools.
"""

from __future__ import annotations

from servo.resilience.clock import ManualClock
from servo.storage.memory import MemoryObjectStore
from servo.testing.dispatchers import QueueDispatcher
from servo.testing.queue import FakeTaskQueue

__all__ = ["FakeTaskQueue", "ManualClock", "MemoryObjectStore", "QueueDispatcher"]
