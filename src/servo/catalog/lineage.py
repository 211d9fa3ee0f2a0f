"""Lineage over the catalog's dependency edges (`LineageCatalog` over SQL).

One statement walks upstream and downstream with recursive CTEs in the database
and returns the members and the edges among them; the result is the same
`servo.graph.Lineage` the in-memory graph gives, so the CLI renders both alike.
Members are ordered topologically over the lineage's own edges (Kahn, layer by
layer, names sorted within a layer) — the order the graph gives whenever the
lineage holds every path between its members. The edges a tenant sees are its
own and the global ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import cast

import sqlalchemy as sa

from servo.catalog import queries as q
from servo.catalog.database import Database
from servo.graph.lineage import DepType, Edge, Lineage, check_depth
from servo.observability import metrics

LINEAGE_SECONDS = metrics.histogram(
    "servo_lineage_query_duration_seconds", "Lineage queries, by source.", ["source"]
)


def topological(names: Iterable[str], edges: Iterable[Edge]) -> list[str]:
    """`names` in topological order over `edges` (Kahn by layers, sorted in a layer);
    members of a cycle, which only inconsistent data can make, come last by name."""
    members = set(names)
    parents: defaultdict[str, set[str]] = defaultdict(set)
    children: defaultdict[str, set[str]] = defaultdict(set)
    for edge in edges:
        if edge.upstream in members and edge.downstream in members:
            parents[edge.downstream].add(edge.upstream)
            children[edge.upstream].add(edge.downstream)
    waiting = {name: len(parents[name]) for name in members}
    layer = sorted(name for name, count in waiting.items() if count == 0)
    order: list[str] = []
    while layer:
        order.extend(layer)
        following = set()
        for name in layer:
            for child in children[name]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    following.add(child)
        layer = sorted(following)
    placed = set(order)
    return order + sorted(members - placed)


def _edge(row: sa.Row[tuple[str, str, str]]) -> Edge:
    return Edge(row.depends_on, row.asset_name, cast(DepType, row.dependency_type))


class SqlLineageCatalog:
    """`servo.catalog.protocol.LineageCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upstream_edges(self, tenant: str | None, asset: str) -> tuple[Edge, ...]:
        query = q.direct_edges(tenant, asset, upstream=True)
        return self._db.run(
            "lineage.upstream_edges",
            tenant,
            lambda connection: tuple(_edge(r) for r in connection.execute(query)),
        )

    def downstream_edges(self, tenant: str | None, asset: str) -> tuple[Edge, ...]:
        query = q.direct_edges(tenant, asset, upstream=False)
        return self._db.run(
            "lineage.downstream_edges",
            tenant,
            lambda connection: tuple(_edge(r) for r in connection.execute(query)),
        )

    def lineage(self, tenant: str | None, asset: str, depth: int | None = None) -> Lineage | None:
        check_depth(depth)
        exists = q.asset_by_name(tenant, asset)
        walk = q.lineage(tenant, asset, depth)

        def work(connection: sa.Connection) -> Lineage | None:
            if connection.execute(exists).first() is None:
                return None
            up: set[str] = set()
            down: set[str] = set()
            edges: set[Edge] = set()
            for kind, upstream, downstream, dep_type in connection.execute(walk):
                if kind == "up":
                    up.add(upstream)
                elif kind == "down":
                    down.add(downstream)
                else:
                    edges.add(Edge(upstream, downstream, dep_type))
            order = topological({asset, *up, *down}, edges)
            position = {name: index for index, name in enumerate(order)}
            return Lineage(
                asset=asset,
                depth=depth,
                upstream=tuple(n for n in order if n in up and n != asset),
                downstream=tuple(n for n in order if n in down and n != asset),
                edges=tuple(
                    sorted(edges, key=lambda e: (position[e.downstream], position[e.upstream]))
                ),
            )

        with LINEAGE_SECONDS.labels("catalog").time():
            return self._db.run("lineage.lineage", tenant, work)
