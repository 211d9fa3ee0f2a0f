"""The run context passed to assets that declare a ``context`` parameter."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AssetContext:
    """What an asset may know about the attempt running it.

    Attributes:
        run_id: the run.
        asset_key: the asset being materialized.
        partition_key: the partition, or None.
        attempt: attempt number (1-based).
        attempt_id: ULID of this attempt.
        log: a structured logger bound to the run, asset and attempt.
        stop_event: set when Servo asks this attempt to stop (run cancelled or attempt
            timed out). Long-running assets should check `stop_requested` and return.
    """

    run_id: str
    asset_key: str
    partition_key: str | None
    attempt: int
    attempt_id: str
    log: Any
    stop_event: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def stop_requested(self) -> bool:
        """Whether Servo asked this attempt to stop; its result will be ignored."""
        return self.stop_event.is_set()
