"""The run context passed to assets that declare a ``context`` parameter."""

from __future__ import annotations

from dataclasses import dataclass
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
    """

    run_id: str
    asset_key: str
    partition_key: str | None
    attempt: int
    attempt_id: str
    log: Any
