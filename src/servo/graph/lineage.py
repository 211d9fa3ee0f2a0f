"""Lineage: what is upstream or downstream of an asset, to a depth, and the edges between.

Queries walk integer adjacency lists breadth-first (a plain stack when the depth is
unlimited), allocate one set and one list per query, and return ids sorted, which
is topological order because `AssetGraph` numbers nodes in topological order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

#: How a downstream asset depends on an upstream one (see `servo.sdk.dependency`).
DepType = Literal["data", "metadata", "control"]

#: Every dependency type.
DEP_TYPES: tuple[DepType, ...] = get_args(DepType)


@dataclass(frozen=True, slots=True)
class Edge:
    """One dependency edge, pointing downstream.

    Attributes:
        upstream: the asset depended on.
        downstream: the asset that depends on it.
        type: ``data``, ``metadata`` or ``control``.
    """

    upstream: str
    downstream: str
    type: DepType


@dataclass(frozen=True, slots=True)
class Lineage:
    """An asset's lineage for display.

    Attributes:
        asset: the asset asked about.
        depth: how many edges away the walk went; None for unlimited.
        upstream: the assets it depends on (transitively, to `depth`), topological order.
        downstream: the assets depending on it (to `depth`), topological order.
        edges: every edge among the asset and those lists, pointing downstream,
            ordered by the downstream asset's topological position.
    """

    asset: str
    depth: int | None
    upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    edges: tuple[Edge, ...]


def check_depth(depth: int | None) -> None:
    """Raise `ValueError` unless `depth` is None or an int >= 1."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be None (unlimited) or an int >= 1, not {depth!r}")


def reach(adjacency: Sequence[Sequence[int]], start: int, depth: int | None) -> list[int]:
    """Ids reachable from `start` within `depth` steps (None: any), sorted, without `start`."""
    seen = {start}
    add = seen.add
    if depth is None:
        stack = [start]
        pop, push = stack.pop, stack.append
        while stack:
            for node in adjacency[pop()]:
                if node not in seen:
                    add(node)
                    push(node)
    else:
        frontier: Sequence[int] = (start,)
        for _ in range(depth):
            following: list[int] = []
            push = following.append
            for current in frontier:
                for node in adjacency[current]:
                    if node not in seen:
                        add(node)
                        push(node)
            if not following:
                break
            frontier = following
    seen.discard(start)
    return sorted(seen)
