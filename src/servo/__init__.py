"""Servo: an asset-centric data orchestrator.

Declare assets as functions and group them::

    from servo import Definitions, asset

    @asset
    def raw_orders() -> list[dict[str, str]]: ...

    @asset
    def clean_orders(raw_orders: list[dict[str, str]]) -> list[dict[str, str]]: ...

    defs = Definitions(assets=[raw_orders, clean_orders])
"""

from __future__ import annotations

from servo._version import __version__
from servo.resilience.retry import RetryPolicy
from servo.sdk import AssetDep, Definitions, asset, workflow
from servo.sdk.context import AssetContext

__all__ = [
    "AssetContext",
    "AssetDep",
    "Definitions",
    "RetryPolicy",
    "__version__",
    "asset",
    "workflow",
]
