"""Register a project's definitions in the catalog: assets, lineage edges, workflows.

``servo materialize`` registers the definitions with each run (in the background,
`servo.embedded.catalog_sync`), so the catalog knows every asset the run may touch,
with its dependency edges (typed data, metadata or control), and a version of each
workflow. Registering unchanged definitions writes nothing, but still reads every
asset to compare; `register_if_changed` skips even that when the hash of the specs
(`definitions_hash`) is the one the tenant's last registration stored. A catalog
rebuilt or restored without that row simply registers again.
"""

from __future__ import annotations

import hashlib
import json
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


#: Bump when the specs' meaning changes, so that every catalog registers again.
_HASH_FORMAT = "servo-definitions-1"


def definitions_hash(definitions: Definitions) -> str:
    """A SHA-256 over every asset and workflow spec, in name order (hex)."""
    assets = []
    for _, definition in sorted(definitions.assets.items()):
        spec = asset_spec(definition)
        assets.append(
            (
                spec.name,
                [(d.name, d.type) for d in spec.dependencies],
                spec.description,
                spec.owner,
                spec.asset_type,
                sorted(spec.tags.items()),
                spec.timeout_s,
            )
        )
    workflows = [
        (w.name, list(w.assets), w.executor, w.description)
        for w in (workflow_spec(d) for _, d in sorted(definitions.workflows.items()))
    ]
    text = json.dumps([_HASH_FORMAT, assets, workflows], separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def register_if_changed(catalog: Catalog, tenant: str, definitions: Definitions) -> bool:
    """Register `definitions` unless the tenant's last registration had the same hash.

    The hash is stored after everything is registered, so a registration cut short
    is done again by the next run.

    Returns:
        True when the definitions were registered.
    """
    digest = definitions_hash(definitions)
    if catalog.registrations.registered_hash(tenant) == digest:
        return False
    register_definitions(catalog, tenant, definitions)
    catalog.registrations.record_hash(tenant, digest)
    return True
