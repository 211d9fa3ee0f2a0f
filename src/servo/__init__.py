"""Servo: an asset-centric data orchestrator.

Declare assets as functions and group them::

    from servo import Definitions, asset

    @asset
    def raw_orders() -> list[dict[str, str]]: ...

    @asset
    def clean_orders(raw_orders: list[dict[str, str]]) -> list[dict[str, str]]: ...

    defs = Definitions(assets=[raw_orders, clean_orders])

Run them from Python (a fresh in-memory home unless ``home=`` names one)::

    import servo

    result = servo.materialize([raw_orders, clean_orders])
    assert result.success, result.errors
    rows = result.value("clean_orders")

and read the latest value materialized in a home with ``servo.load_value(asset)``.
"""

from __future__ import annotations

from servo import executor
from servo._version import __version__
from servo.embedded import AssetError, MaterializeResult, load_value, materialize
from servo.errors import RunFailedError, ServoError, ValueNotFoundError
from servo.resilience.retry import RetryPolicy
from servo.sdk import AssetDefinition, AssetDep, Definitions, asset, workflow
from servo.sdk.context import AssetContext

__all__ = [
    "AssetContext",
    "AssetDefinition",
    "AssetDep",
    "AssetError",
    "Definitions",
    "MaterializeResult",
    "RetryPolicy",
    "RunFailedError",
    "ServoError",
    "ValueNotFoundError",
    "__version__",
    "asset",
    "executor",
    "load_value",
    "materialize",
    "workflow",
]
