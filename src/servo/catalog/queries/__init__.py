"""Every catalog statement, built with SQLAlchemy Core: the catalog's SQL in one place.

``common`` (tenant filters, upserts, paging), ``definitions`` (assets, edges,
lineage, workflows) and ``history`` (executions, tasks, materializations, the
projector's checkpoint); everything is re-exported here, and the repositories use
it as ``queries.name``.

Rules every statement follows:

- **Tenant filter in every statement**, on the indexed ``tenant_key`` column:
  reads see the tenant's rows and the global ones (`visible`), writes touch only
  the tenant's own (`owned`). On SQLite this *is* the isolation; on PostgreSQL
  row-level security enforces the same rule underneath.
- **Idempotent writes**: upserts are ``INSERT ... ON CONFLICT (tenant key, natural
  key) DO UPDATE ... WHERE <some column IS DISTINCT FROM the new value>``, so
  writing the same row again changes nothing (no new row version either);
  idempotent creates are ``ON CONFLICT DO NOTHING`` and then a read.
- **Keyset pages** (`page`): for a tenant, the tenant's rows and the global rows are
  two index-ordered branches merged by ``UNION ALL`` (each branch limited), so a
  page costs O(limit) whatever the table size; the cursor is the last row's sort
  key, and a row's sort key never changes, so concurrent inserts can neither make
  a page repeat a row nor skip one that existed before the first page.
- **Hot statements are built once**: page shapes are cached and the idempotent
  create's lookup is a constant, both taking bind parameters — building a
  statement costs more than running it on a warm server.
"""

from __future__ import annotations

from servo.catalog.queries.common import (
    InsertFactory,
    PageQuery,
    Tenant,
    changed,
    owned,
    page,
    page_params,
    upsert,
    visible,
)
from servo.catalog.queries.definitions import (
    NEWEST_VERSIONS_ONLY,
    asset_by_name,
    delete_asset,
    delete_edges,
    delete_edges_of,
    delete_workflow,
    direct_edges,
    edges_of,
    insert_workflow_version,
    lineage,
    owned_rows,
    owned_workflow_versions,
    registered_hash,
    save_registered_hash,
    upsert_assets,
    upsert_edges,
    workflow_version,
    workflow_versions,
)
from servo.catalog.queries.history import (
    EXECUTION_BY_KEY,
    checkpoint,
    create_checkpoint,
    create_execution,
    delete_execution,
    delete_materialization,
    execution_by_id,
    latest_materialization,
    materialization_by_key,
    save_checkpoint,
    set_execution_status,
    tasks_of,
    upsert_executions,
    upsert_materializations,
    upsert_tasks,
)

__all__ = [
    "EXECUTION_BY_KEY",
    "NEWEST_VERSIONS_ONLY",
    "InsertFactory",
    "PageQuery",
    "Tenant",
    "asset_by_name",
    "changed",
    "checkpoint",
    "create_checkpoint",
    "create_execution",
    "delete_asset",
    "delete_edges",
    "delete_edges_of",
    "delete_execution",
    "delete_materialization",
    "delete_workflow",
    "direct_edges",
    "edges_of",
    "execution_by_id",
    "insert_workflow_version",
    "latest_materialization",
    "lineage",
    "materialization_by_key",
    "owned",
    "owned_rows",
    "owned_workflow_versions",
    "page",
    "page_params",
    "registered_hash",
    "save_checkpoint",
    "save_registered_hash",
    "set_execution_status",
    "tasks_of",
    "upsert",
    "upsert_assets",
    "upsert_edges",
    "upsert_executions",
    "upsert_materializations",
    "upsert_tasks",
    "visible",
    "workflow_version",
    "workflow_versions",
]
