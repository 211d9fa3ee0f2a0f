"""Registered assets and their dependency edges (`AssetCatalog` over SQL).

Registering an asset replaces its edges: the tenant's existing edges of the asset
are diffed against the new ones, stale edges are deleted by id and new or retyped
edges upserted, so registering the same definitions again writes nothing. An
asset's `dependencies` are the edges owned by the asset's owner (a tenant's asset
does not inherit the edges of a global asset of the same name).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Any, cast

import sqlalchemy as sa

from servo.catalog import queries as q
from servo.catalog.database import Database
from servo.catalog.ids import new_id
from servo.catalog.pagination import check_page, decode_cursor, to_page
from servo.catalog.records import DEPENDENCY_TYPES, Asset, AssetSpec, Dependency, Page
from servo.catalog.schema import asset_dependencies, assets
from servo.graph.lineage import DepType

#: Names per IN list (SQLite allows 32,766 parameters per statement).
CHUNK = 500
#: Registrations larger than this read all of the tenant's assets and edges at once.
WHOLE_REGISTRY = 5000

_PAGE = q.PageQuery(assets, (assets.c.name, assets.c.id), False, tuple(assets.c))


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check(spec: AssetSpec) -> None:
    if not spec.name:
        raise ValueError("an asset needs a non-empty name")
    for dep in spec.dependencies:
        if dep.type not in DEPENDENCY_TYPES:
            raise ValueError(
                f"asset {spec.name!r}: dependency type {dep.type!r} is not one of "
                f"{', '.join(DEPENDENCY_TYPES)}"
            )


def _owned(
    connection: sa.Connection, table: sa.Table, tenant: str | None, names: Sequence[str]
) -> Iterator[Any]:
    """The tenant's own rows of `table` for the asset `names`: by IN lists for a few
    names, all of the tenant's rows at once for a large registration."""
    if len(names) > WHOLE_REGISTRY:
        yield from connection.execute(q.owned_rows(table, tenant, None))
        return
    for part in chunks(names):
        yield from connection.execute(q.owned_rows(table, tenant, part))


def register(
    db: Database, connection: sa.Connection, tenant: str | None, specs: Sequence[AssetSpec]
) -> None:
    """Upsert `specs` and replace their edges, in the caller's transaction.

    The tenant's current rows are read first and only what differs is written, so
    registering unchanged definitions costs reads alone.
    """
    now = db.now()
    by_name = {spec.name: spec for spec in specs}  # the last spec of a name wins
    names = list(by_name)
    current = {
        row.name: (row.description, row.owner, row.asset_type, row.tags, row.timeout_s)
        for row in _owned(connection, assets, tenant, names)
    }
    rows = [
        {
            "id": new_id(), "tenant_id": tenant, "name": s.name, "description": s.description,
            "owner": s.owner, "asset_type": s.asset_type, "tags": dict(s.tags),
            "timeout_s": s.timeout_s, "created_at": now, "updated_at": now,
        }
        for s in by_name.values()
        if current.get(s.name) != (s.description, s.owner, s.asset_type, dict(s.tags), s.timeout_s)
    ]  # fmt: skip
    if rows:
        connection.execute(q.upsert_assets(db.insert), rows)
    desired = {(s.name, dep.name): dep.type for s in by_name.values() for dep in s.dependencies}
    existing = {
        (edge.asset_name, edge.depends_on): (edge.id, edge.dependency_type)
        for edge in _owned(connection, asset_dependencies, tenant, names)
        if edge.asset_name in by_name
    }
    stale = [edge_id for key, (edge_id, _) in existing.items() if key not in desired]
    for ids in chunks(stale):
        connection.execute(q.delete_edges(tenant, ids))
    changed = [
        {"tenant_id": tenant, "asset_name": asset, "depends_on": upstream,
         "dependency_type": dep_type, "created_at": now}
        for (asset, upstream), dep_type in desired.items()
        if existing.get((asset, upstream), (0, None))[1] != dep_type
    ]  # fmt: skip
    if changed:
        connection.execute(q.upsert_edges(db.insert), changed)


def with_dependencies(
    connection: sa.Connection, tenant: str | None, rows: Sequence[Any]
) -> list[Asset]:
    """Asset records for `rows`, with the edges owned by each asset's owner."""
    edges: defaultdict[tuple[str | None, str], list[Dependency]] = defaultdict(list)
    names = sorted({row.name for row in rows})
    for part in chunks(names):
        for edge in connection.execute(q.edges_of(tenant, part)):
            dep_type = cast(DepType, edge.dependency_type)
            edges[(edge.tenant_id, edge.asset_name)].append(Dependency(edge.depends_on, dep_type))
    return [
        Asset(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            dependencies=tuple(sorted(edges[(row.tenant_id, row.name)], key=lambda d: d.name)),
            description=row.description,
            owner=row.owner,
            asset_type=row.asset_type,
            tags=MappingProxyType(dict(row.tags or {})),
            timeout_s=row.timeout_s,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


class SqlAssetCatalog:
    """`servo.catalog.protocol.AssetCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upsert(self, tenant: str | None, spec: AssetSpec) -> Asset:
        _check(spec)

        def work(connection: sa.Connection) -> Asset:
            register(self._db, connection, tenant, [spec])
            row = connection.execute(q.asset_by_name(tenant, spec.name)).one()
            return with_dependencies(connection, tenant, [row])[0]

        return self._db.run("assets.upsert", tenant, work, write=True)

    def upsert_many(self, tenant: str | None, specs: Sequence[AssetSpec]) -> None:
        for spec in specs:
            _check(spec)
        self._db.run(
            "assets.upsert_many",
            tenant,
            lambda connection: register(self._db, connection, tenant, specs),
            write=True,
        )

    def get(self, tenant: str | None, name: str) -> Asset | None:
        def work(connection: sa.Connection) -> Asset | None:
            row = connection.execute(q.asset_by_name(tenant, name)).first()
            return None if row is None else with_dependencies(connection, tenant, [row])[0]

        return self._db.run("assets.get", tenant, work)

    def list(
        self, tenant: str | None, *, limit: int = 100, offset: int = 0, cursor: str | None = None
    ) -> Page[Asset]:
        check_page(limit, offset, cursor)
        after = None if cursor is None else decode_cursor(cursor, (str, str))
        query = q.page(_PAGE, system=tenant is None, keyset=after is not None)
        params = q.page_params(tenant, limit=limit + 1, offset=offset, after=after)

        def work(connection: sa.Connection) -> Page[Asset]:
            rows = connection.execute(query, params).all()
            records = {a.id: a for a in with_dependencies(connection, tenant, rows[:limit])}
            return to_page(rows, limit, lambda r: (r.name, r.id), lambda r: records[r.id])

        return self._db.run("assets.list", tenant, work)

    def delete(self, tenant: str | None, name: str) -> bool:
        def work(connection: sa.Connection) -> bool:
            connection.execute(q.delete_edges_of(tenant, name))
            return connection.execute(q.delete_asset(tenant, name)).rowcount > 0

        return self._db.run("assets.delete", tenant, work, write=True)
