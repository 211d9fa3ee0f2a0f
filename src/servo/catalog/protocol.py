"""The catalog's contract: small role protocols, composed by `Catalog`.

Every call takes the tenant first. A tenant id sees its own rows and the global
rows (tenant None) and writes only its own; ``None`` is the system, which sees and
writes only the global rows. PostgreSQL enforces this with row-level security,
SQLite by filtering every statement (ADR 0007).

Lists are paged: ``limit`` (1..1000) with either ``offset`` (small lists, jumping
to a page) or ``cursor`` (keyset: the `Page.next_cursor` of the previous page;
stable while rows are inserted, and as fast on the last page as on the first).

Errors are `servo.errors.CatalogError` subclasses: `CatalogUnavailableError` after
transient failures outlived the retries (or the breaker is open),
`CatalogIntegrityError` for a refused constraint, `TenantIsolationError` when
row-level security refused a write, `CatalogSchemaError` when the schema is not
migrated. Invalid arguments (empty tenant, bad limit or cursor) raise `ValueError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from servo.catalog.records import Asset, AssetSpec, Page, Workflow, WorkflowSpec
from servo.catalog.run_records import (
    Checkpoint,
    Execution,
    ExecutionSpec,
    ExecutionStatus,
    ExecutionTask,
    Materialization,
    MaterializationSpec,
    ProjectionBatch,
)
from servo.graph.lineage import Edge, Lineage

Tenant = str | None


class AssetCatalog(Protocol):
    """Registered assets and their dependency edges."""

    def upsert(self, tenant: Tenant, spec: AssetSpec) -> Asset:
        """Create or update the asset; its dependency edges become ``spec``'s."""
        ...

    def upsert_many(self, tenant: Tenant, specs: Sequence[AssetSpec]) -> None:
        """Register many assets (a project's definitions) in one transaction; assets
        and edges already as specified are left untouched."""
        ...

    def get(self, tenant: Tenant, name: str) -> Asset | None:
        """The asset `name` (the tenant's own before a global one of that name)."""
        ...

    def list(
        self, tenant: Tenant, *, limit: int = 100, offset: int = 0, cursor: str | None = None
    ) -> Page[Asset]:
        """Assets by name."""
        ...

    def delete(self, tenant: Tenant, name: str) -> bool:
        """Delete the tenant's asset and its edges; False when it had none."""
        ...


class WorkflowCatalog(Protocol):
    """Versioned workflow definitions."""

    def register(self, tenant: Tenant, spec: WorkflowSpec) -> Workflow:
        """The latest version when the definition is unchanged, else a new version."""
        ...

    def get(self, tenant: Tenant, name: str, version: int | None = None) -> Workflow | None:
        """A version of workflow `name` (the latest when `version` is None)."""
        ...

    def versions(self, tenant: Tenant, name: str) -> tuple[Workflow, ...]:
        """Every version of workflow `name`, oldest first."""
        ...

    def list(
        self, tenant: Tenant, *, limit: int = 100, offset: int = 0, cursor: str | None = None
    ) -> Page[Workflow]:
        """The latest version of each workflow, by name."""
        ...

    def delete(self, tenant: Tenant, name: str) -> int:
        """Delete every version of the tenant's workflow `name`; returns how many."""
        ...


class ExecutionCatalog(Protocol):
    """Executions (runs) and the state of their tasks."""

    def create(self, tenant: Tenant, spec: ExecutionSpec) -> tuple[Execution, bool]:
        """Create the execution, or return the existing one with the same id or the
        same idempotency key (in the same workspace).

        Returns:
            The execution and whether this call created it.
        """
        ...

    def get(self, tenant: Tenant, execution_id: str) -> Execution | None:
        """The execution `execution_id`."""
        ...

    def list(
        self,
        tenant: Tenant,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[Execution]:
        """Executions, newest requested first."""
        ...

    def update_status(
        self, tenant: Tenant, execution_id: str, status: ExecutionStatus, *, at: int | None = None
    ) -> Execution | None:
        """Set the status (a terminal one also sets ``completed_at`` to `at`, or now)."""
        ...

    def delete(self, tenant: Tenant, execution_id: str) -> bool:
        """Delete the execution with its tasks and materializations."""
        ...

    def tasks(self, tenant: Tenant, execution_id: str) -> tuple[ExecutionTask, ...]:
        """The tasks of the execution, by task key."""
        ...


class MaterializationCatalog(Protocol):
    """Values written by executions."""

    def record(self, tenant: Tenant, spec: MaterializationSpec) -> Materialization:
        """Record a materialization; recording it again changes nothing."""
        ...

    def record_many(self, tenant: Tenant, specs: Sequence[MaterializationSpec]) -> None:
        """Record many materializations in one transaction (idempotent)."""
        ...

    def list(
        self,
        tenant: Tenant,
        *,
        asset_key: str | None = None,
        execution_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[Materialization]:
        """Materializations, newest first, optionally of one asset or one execution."""
        ...

    def latest(
        self, tenant: Tenant, asset_key: str, partition_key: str | None = None
    ) -> Materialization | None:
        """The newest materialization of an asset (partition)."""
        ...

    def delete(self, tenant: Tenant, materialization_id: str) -> bool:
        """Delete one materialization by row id."""
        ...


class LineageCatalog(Protocol):
    """Lineage over the registered dependency edges."""

    def upstream_edges(self, tenant: Tenant, asset: str) -> tuple[Edge, ...]:
        """The asset's direct dependencies."""
        ...

    def downstream_edges(self, tenant: Tenant, asset: str) -> tuple[Edge, ...]:
        """The edges of the assets that depend directly on `asset`."""
        ...

    def lineage(self, tenant: Tenant, asset: str, depth: int | None = None) -> Lineage | None:
        """Upstream and downstream of `asset` to `depth` edges (None: unlimited),
        and the edges among them; None when the asset is not registered."""
        ...


class ProjectionCatalog(Protocol):
    """The catalog projector's checkpoint and atomic apply."""

    def checkpoint(self, tenant: str, workspace_id: str) -> Checkpoint | None:
        """The projector's checkpoint for the engine scope, or None before the first."""
        ...

    def apply(self, tenant: str, batch: ProjectionBatch) -> bool:
        """Upsert the batch and move the checkpoint in one transaction.

        Returns:
            False (and changes nothing) when the checkpoint is not at
            ``batch.after_generation``: another projector got there first.
        """
        ...


class RegistrationCatalog(Protocol):
    """The hash of the definitions a tenant last registered (`servo.catalog.registry`)."""

    def registered_hash(self, tenant: str) -> str | None:
        """The hash stored by the tenant's last registration, or None."""
        ...

    def record_hash(self, tenant: str, definitions_hash: str) -> None:
        """Store `definitions_hash` as the tenant's registered definitions."""
        ...


class Catalog(Protocol):
    """The metadata catalog: one role object per concept, over one database."""

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        ...

    @property
    def assets(self) -> AssetCatalog: ...

    @property
    def workflows(self) -> WorkflowCatalog: ...

    @property
    def executions(self) -> ExecutionCatalog: ...

    @property
    def materializations(self) -> MaterializationCatalog: ...

    @property
    def lineage(self) -> LineageCatalog: ...

    @property
    def projection(self) -> ProjectionCatalog: ...

    @property
    def registrations(self) -> RegistrationCatalog: ...

    def close(self) -> None:
        """Release the connections."""
        ...

    def __enter__(self) -> Catalog: ...

    def __exit__(self, *exc: object) -> None: ...
