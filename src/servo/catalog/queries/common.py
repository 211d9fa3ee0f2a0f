"""What every catalog statement shares: tenant filters, idempotent upserts, paging."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

InsertFactory = Callable[[sa.Table], Any]
Tenant = str | None


def visible(table: sa.FromClause, tenant: Tenant) -> sa.ColumnElement[bool]:
    """Rows `tenant` may read: its own and the global ones (the system: global only)."""
    key = table.c.tenant_key
    return key == "" if tenant is None else key.in_([tenant, ""])


def owned(table: sa.Table, tenant: Tenant) -> sa.ColumnElement[bool]:
    """Rows `tenant` may write: exactly its own (the system: the global rows)."""
    return table.c.tenant_key == (tenant or "")


def changed(table: sa.Table, excluded: Any, columns: Sequence[str]) -> sa.ColumnElement[bool]:
    """Some of `columns` differs between the stored row and the proposed (excluded) one."""
    return sa.or_(*(table.c[name].is_distinct_from(excluded[name]) for name in columns))


def upsert(
    insert: InsertFactory,
    table: sa.Table,
    key: Sequence[sa.ColumnElement[Any]],
    updated: Sequence[str],
    touch: Sequence[str] = ("updated_at",),
) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE the `updated` columns when one differs."""
    stmt = insert(table)
    set_ = {name: stmt.excluded[name] for name in (*updated, *touch)}
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_=set_, where=changed(table, stmt.excluded, updated)
    )


# ------------------------------------------------------------------------- paging
@dataclass(frozen=True, slots=True)
class PageQuery:
    """The shape of a paged list; `page` builds (and caches) one statement per shape.

    Attributes:
        table: the table listed.
        order: the sort key's columns, ending with a unique one.
        descending: newest (largest) first.
        columns: the columns selected, in the order of the record they become.
        equal: columns filtered for equality (params ``eq_{name}``).
        extra: fixed conditions (module constants, so that shapes compare equal).
    """

    table: sa.Table
    order: tuple[sa.Column[Any], ...]
    descending: bool
    columns: tuple[sa.Column[Any], ...]
    equal: tuple[str, ...] = ()
    extra: tuple[sa.ColumnElement[bool], ...] = ()


@functools.lru_cache(maxsize=128)
def page(shape: PageQuery, *, system: bool, keyset: bool) -> sa.Select[Any]:
    """One page of a list, as a statement with bind parameters (`page_params`).

    For a tenant, its rows and the global rows are two branches, each an index scan
    in sort order limited to ``offset + limit`` rows, merged by ``UNION ALL`` and
    sorted again (``Merge Append`` on PostgreSQL); the system has one branch.
    """
    table, order = shape.table, shape.order

    def branch(key: sa.BindParameter[str] | str) -> sa.Select[Any]:
        conditions: list[sa.ColumnElement[bool]] = [table.c.tenant_key == key, *shape.extra]
        conditions += [table.c[name] == sa.bindparam(f"eq_{name}") for name in shape.equal]
        if keyset:
            position = sa.tuple_(*order)
            bound = sa.tuple_(
                *(sa.bindparam(f"after_{i}", type_=c.type) for i, c in enumerate(order))
            )
            conditions.append(position < bound if shape.descending else position > bound)
        ordering = [c.desc() if shape.descending else c.asc() for c in order]
        return sa.select(*shape.columns).where(*conditions).order_by(*ordering)

    limit = sa.bindparam("limit", type_=sa.Integer)
    offset = sa.bindparam("offset", type_=sa.Integer)
    if system:
        return branch("").limit(limit).offset(offset)
    reach = sa.bindparam("reach", type_=sa.Integer)
    own = branch(sa.bindparam("tenant", type_=sa.Text)).limit(reach).subquery()
    shared = branch("").limit(reach).subquery()
    merged = sa.union_all(sa.select(own), sa.select(shared)).subquery()
    ordering = [merged.c[c.name].desc() if shape.descending else merged.c[c.name] for c in order]
    return sa.select(merged).order_by(*ordering).limit(limit).offset(offset)


def page_params(
    tenant: Tenant,
    *,
    limit: int,
    offset: int,
    after: Sequence[Any] | None,
    equal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The bind parameters of a `page` statement."""
    params: dict[str, Any] = {"limit": limit, "offset": offset, "reach": limit + offset}
    if tenant is not None:
        params["tenant"] = tenant
    for index, value in enumerate(after or ()):
        params[f"after_{index}"] = value
    for name, value in (equal or {}).items():
        params[f"eq_{name}"] = value
    return params
