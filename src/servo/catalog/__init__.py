"""The metadata catalog: assets, lineage, workflows, executions and materializations.

A read model of the engine plus the registry of definitions, on SQLite (embedded,
``{home}/catalog.db``) or PostgreSQL (row-level security per tenant); see ADR 0007.

    from servo.catalog import open_catalog

    with open_catalog(settings) as catalog:
        page = catalog.executions.list("acme", limit=50)

Records, specs and protocols import nothing heavy; `open_catalog`,
`migrate_catalog`, `CatalogProjector` and `register_definitions` load SQLAlchemy
(and the engine) on first use, so ``import servo`` and the CLI stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from servo.catalog.protocol import (
    AssetCatalog,
    Catalog,
    ExecutionCatalog,
    LineageCatalog,
    MaterializationCatalog,
    ProjectionCatalog,
    WorkflowCatalog,
)
from servo.catalog.records import Asset, AssetSpec, Dependency, Page, Workflow, WorkflowSpec
from servo.catalog.run_records import (
    Checkpoint,
    Execution,
    ExecutionSpec,
    ExecutionTask,
    Materialization,
    MaterializationSpec,
    ProjectedFiles,
    ProjectionBatch,
    TaskSpec,
)

if TYPE_CHECKING:
    from servo.catalog.catalog import SqlCatalog, catalog_url, migrate_catalog, open_catalog
    from servo.catalog.projector import CatalogProjector
    from servo.catalog.registry import register_definitions

_LAZY = {
    "SqlCatalog": "servo.catalog.catalog",
    "catalog_url": "servo.catalog.catalog",
    "migrate_catalog": "servo.catalog.catalog",
    "open_catalog": "servo.catalog.catalog",
    "CatalogProjector": "servo.catalog.projector",
    "register_definitions": "servo.catalog.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'servo.catalog' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Asset",
    "AssetCatalog",
    "AssetSpec",
    "Catalog",
    "CatalogProjector",
    "Checkpoint",
    "Dependency",
    "Execution",
    "ExecutionCatalog",
    "ExecutionSpec",
    "ExecutionTask",
    "LineageCatalog",
    "Materialization",
    "MaterializationCatalog",
    "MaterializationSpec",
    "Page",
    "ProjectedFiles",
    "ProjectionBatch",
    "ProjectionCatalog",
    "SqlCatalog",
    "TaskSpec",
    "Workflow",
    "WorkflowCatalog",
    "WorkflowSpec",
    "catalog_url",
    "migrate_catalog",
    "open_catalog",
    "register_definitions",
]
