"""The Python SDK: declare assets and workflows, group them, load them.

``asset`` and ``workflow`` decorate plain functions and attach frozen definitions;
`Definitions` validates a project's assets as a whole (names, dependencies,
cycles) and exposes its `AssetGraph`; `load_definitions` finds them in a file,
a directory or a module.
"""

from __future__ import annotations

from servo.sdk.asset import AssetDefinition, asset
from servo.sdk.definitions import Definitions
from servo.sdk.dependency import AssetDep, DepType
from servo.sdk.loader import load_definitions
from servo.sdk.workflow import WorkflowDefinition, workflow

__all__ = [
    "AssetDefinition",
    "AssetDep",
    "Definitions",
    "DepType",
    "WorkflowDefinition",
    "asset",
    "load_definitions",
    "workflow",
]
