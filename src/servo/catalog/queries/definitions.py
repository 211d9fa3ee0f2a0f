"""Statements on the registry of definitions: assets, their edges (lineage), workflows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from servo.catalog.queries.common import InsertFactory, Tenant, changed, owned, upsert, visible
from servo.catalog.schema import asset_dependencies, assets, definitions_state, workflows


# ------------------------------------------------------------------------- assets
def upsert_assets(insert: InsertFactory) -> Any:
    """Upsert assets by (tenant, name); an existing asset keeps its id."""
    return upsert(
        insert,
        assets,
        [assets.c.tenant_key, assets.c.name],
        ["description", "owner", "asset_type", "tags", "timeout_s"],
    )


def asset_by_name(tenant: Tenant, name: str) -> sa.Select[Any]:
    """The asset `name`: the tenant's own first, then a global one."""
    own_first = sa.case((assets.c.tenant_id.is_(None), 1), else_=0)
    return (
        sa.select(assets)
        .where(visible(assets, tenant), assets.c.name == name)
        .order_by(own_first)
        .limit(1)
    )


def delete_asset(tenant: Tenant, name: str) -> sa.Delete:
    """Delete the tenant's asset `name`."""
    return sa.delete(assets).where(owned(assets, tenant), assets.c.name == name)


# ------------------------------------------------------------------- dependencies
def edges_of(tenant: Tenant, names: Sequence[str]) -> sa.Select[Any]:
    """The visible dependency edges of the assets `names`."""
    return sa.select(asset_dependencies).where(
        visible(asset_dependencies, tenant), asset_dependencies.c.asset_name.in_(names)
    )


def owned_rows(table: sa.Table, tenant: Tenant, names: Sequence[str] | None) -> sa.Select[Any]:
    """The tenant's own assets (or edges) of the asset `names` (None: all of them), to
    diff a registration against."""
    column = table.c.name if table is assets else table.c.asset_name
    query = sa.select(table).where(owned(table, tenant))
    return query if names is None else query.where(column.in_(names))


def upsert_edges(insert: InsertFactory) -> Any:
    """Upsert edges by (tenant, asset, upstream); params: every column but id."""
    stmt = insert(asset_dependencies)
    return stmt.on_conflict_do_update(
        index_elements=[
            asset_dependencies.c.tenant_key,
            asset_dependencies.c.asset_name,
            asset_dependencies.c.depends_on,
        ],
        set_={"dependency_type": stmt.excluded.dependency_type},
        where=changed(asset_dependencies, stmt.excluded, ["dependency_type"]),
    )


def delete_edges(tenant: Tenant, ids: Sequence[int]) -> sa.Delete:
    """Delete the tenant's edges by id."""
    return sa.delete(asset_dependencies).where(
        owned(asset_dependencies, tenant), asset_dependencies.c.id.in_(ids)
    )


def delete_edges_of(tenant: Tenant, name: str) -> sa.Delete:
    """Delete the tenant's edges of asset `name`."""
    return sa.delete(asset_dependencies).where(
        owned(asset_dependencies, tenant), asset_dependencies.c.asset_name == name
    )


def direct_edges(tenant: Tenant, asset: str, *, upstream: bool) -> sa.Select[Any]:
    """Edges into `asset` (upstream) or out of it (downstream)."""
    column = asset_dependencies.c.asset_name if upstream else asset_dependencies.c.depends_on
    return (
        sa.select(asset_dependencies)
        .where(visible(asset_dependencies, tenant), column == asset)
        .order_by(asset_dependencies.c.asset_name, asset_dependencies.c.depends_on)
    )


def lineage(tenant: Tenant, asset: str, depth: int | None) -> sa.CompoundSelect[Any]:
    """Rows ``(kind, upstream, downstream, type)``: ``kind`` is ``up`` or ``down`` for
    an asset reached walking that way (in ``upstream`` / ``downstream``
    respectively), ``edge`` for an edge between two members of the lineage.

    Two recursive CTEs walk the edges; with a depth limit they carry the depth, and
    without one ``UNION`` de-duplicates names, which also ends cycles.
    """
    d = asset_dependencies

    def walk(name: str, *, upstream: bool) -> sa.CTE:
        near, far = (
            (d.c.asset_name, d.c.depends_on) if upstream else (d.c.depends_on, d.c.asset_name)
        )
        columns: list[Any] = [far.label("name")]
        if depth is not None:
            columns.append(sa.literal(1).label("depth"))
        seed = sa.select(*columns).where(visible(d, tenant), near == asset)
        cte = seed.cte(name, recursive=True)
        step = d.alias(f"{name}_step")
        s_near, s_far = (
            (step.c.asset_name, step.c.depends_on)
            if upstream
            else (step.c.depends_on, step.c.asset_name)
        )
        more: list[Any] = [s_far]
        conditions = [visible(step, tenant), s_near == cte.c.name]
        if depth is not None:
            more.append(cte.c.depth + 1)
            conditions.append(cte.c.depth < depth)
        return cte.union(sa.select(*more).where(*conditions))

    up, down = walk("up", upstream=True), walk("down", upstream=False)
    members = sa.union(
        sa.select(up.c.name), sa.select(down.c.name), sa.select(sa.literal(asset).label("name"))
    ).cte("members")
    null = sa.literal(None, sa.Text)
    return sa.union_all(
        sa.select(sa.literal("up"), up.c.name, null, null).distinct(),
        sa.select(sa.literal("down"), null, down.c.name, null).distinct(),
        sa.select(sa.literal("edge"), d.c.depends_on, d.c.asset_name, d.c.dependency_type).where(
            visible(d, tenant),
            d.c.asset_name.in_(sa.select(members.c.name)),
            d.c.depends_on.in_(sa.select(members.c.name)),
        ),
    )


# ---------------------------------------------------------------------- workflows
def workflow_version(tenant: Tenant, name: str, version: int | None) -> sa.Select[Any]:
    """A version of workflow `name` (the newest when None), the tenant's own first."""
    own_first = sa.case((workflows.c.tenant_id.is_(None), 1), else_=0)
    query = sa.select(workflows).where(visible(workflows, tenant), workflows.c.name == name)
    if version is not None:
        query = query.where(workflows.c.version == version)
    return query.order_by(own_first, workflows.c.version.desc()).limit(1)


def owned_workflow_versions(tenant: Tenant, name: str) -> sa.Select[Any]:
    """The tenant's own versions of `name`, newest first (to register a new one)."""
    return (
        sa.select(workflows)
        .where(owned(workflows, tenant), workflows.c.name == name)
        .order_by(workflows.c.version.desc())
    )


def workflow_versions(tenant: Tenant, name: str) -> sa.Select[Any]:
    """Every visible version of `name`, oldest first."""
    return (
        sa.select(workflows)
        .where(visible(workflows, tenant), workflows.c.name == name)
        .order_by(workflows.c.version, workflows.c.id)
    )


def insert_workflow_version(insert: InsertFactory) -> Any:
    """Insert a version; a concurrent registration of the same definition is a no-op."""
    return insert(workflows).on_conflict_do_nothing()


def _newest_versions_only() -> sa.ColumnElement[bool]:
    newer = workflows.alias("newer")
    return ~sa.exists().where(
        newer.c.tenant_key == workflows.c.tenant_key,
        newer.c.name == workflows.c.name,
        newer.c.version > workflows.c.version,
    )


#: Filter for pages of workflows: no newer version of the name by the same owner.
NEWEST_VERSIONS_ONLY = _newest_versions_only()


def delete_workflow(tenant: Tenant, name: str) -> sa.Delete:
    """Delete every version of the tenant's workflow `name`."""
    return sa.delete(workflows).where(owned(workflows, tenant), workflows.c.name == name)


# ------------------------------------------------------------- registration hash
def registered_hash(tenant: str) -> sa.Select[Any]:
    """The hash of the definitions the tenant last registered."""
    return sa.select(definitions_state.c.definitions_hash).where(owned(definitions_state, tenant))


def save_registered_hash(insert: InsertFactory) -> Any:
    """Insert or replace the tenant's registered-definitions hash."""
    stmt = insert(definitions_state)
    return stmt.on_conflict_do_update(
        index_elements=[definitions_state.c.tenant_id],
        set_={
            "definitions_hash": stmt.excluded.definitions_hash,
            "updated_at": stmt.excluded.updated_at,
        },
    )
