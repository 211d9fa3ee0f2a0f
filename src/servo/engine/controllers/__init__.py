"""Controllers: pure functions from state to events. They never touch storage.

- `run`: definitions + selection -> the `RunRequested` plan (tasks and edges).
- `ready`: READY tasks -> `DispatchRequested` with a fresh attempt_id.

Skip propagation and run completion are not controllers: they are derived states
computed by the fold (`servo.engine.derive`), so they never need an event.
"""

from __future__ import annotations
