"""Register a project's definitions in the catalog: assets, lineage edges, workflows.

``servo materialize`` calls `register_definitions` before a run, so the catalog
knows every asset the run may touch, with its dependency edges (typed data,
metadata or control), and a version of each workflow. Registering unchanged
definitions writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servo.catalog.records import AssetSpec, Dependency, WorkflowSpec

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.sdk.asset import AssetDefinition
    from servo.sdk.definitions import Definitions
    from servo.sdk.workflow import WorkflowDefinition


def asset_spec(definition: AssetDefinition) -> AssetSpec:
    """The catalog spec of an asset definition."""
    return AssetSpec(
        name=definition.name,
        dependencies=tuple(Dependency(d.name, d.type) for d in definition.dependencies),
        description=definition.description,
        owner=definition.owner,
        asset_type=definition.asset_type,
        tags=definition.tags,
        timeout_s=definition.timeout,
    )


def workflow_spec(definition: WorkflowDefinition) -> WorkflowSpec:
    """The catalog spec of a workflow definition."""
    return WorkflowSpec(
        name=definition.name,
        assets=definition.asset_names,
        executor=definition.executor,
        description=definition.description,
    )


def register_definitions(catalog: Catalog, tenant: str | None, definitions: Definitions) -> None:
    """Register every asset (one transaction) and every workflow of `definitions`."""
    catalog.assets.upsert_many(tenant, [asset_spec(d) for d in definitions.assets.values()])
    for workflow in definitions.workflows.values():
        catalog.workflows.register(tenant, workflow_spec(workflow))
