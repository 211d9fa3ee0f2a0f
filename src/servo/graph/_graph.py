"""`AssetGraph`: an immutable, validated DAG of assets with typed edges.

Representation (built for 100,000 assets): node ids are ints numbered in the
deterministic topological order (Kahn layer by layer, names sorted within a level),
so sorting ids sorts by topological position and each level is a contiguous id
range. Adjacency is a tuple of int tuples per direction; edge types are kept
beside the parent tuples. Names and the name -> id index are built once.
Construction validates everything (duplicate names, unknown dependencies, cycles),
so an `AssetGraph` is always a DAG.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence

from servo.errors import CycleError, DefinitionError, SelectionError
from servo.graph.lineage import DEP_TYPES, DepType, Edge, Lineage, check_depth, reach
from servo.graph.planner import ExecutionPlan, find_cycle, topological_levels
from servo.graph.suggest import did_you_mean

NodeSpec = tuple[str, Iterable[tuple[str, DepType]]]


_VALID_TYPES = frozenset(DEP_TYPES)


def _bad_dependency(name: str, deps: Sequence[tuple[str, str]], names: Sequence[str]) -> None:
    """Raise the error for the first unknown or repeated dependency of `name`."""
    known = set(names)
    seen: set[str] = set()
    for dep_name, dep_type in deps:
        if dep_name not in known:
            raise DefinitionError(
                f"asset {name!r} depends on {dep_name!r}, which is not defined"
                + did_you_mean(dep_name, names)
            )
        if dep_type not in _VALID_TYPES:
            raise DefinitionError(
                f"asset {name!r}: dependency {dep_name!r} has unknown type {dep_type!r}"
            )
        if dep_name in seen:
            raise DefinitionError(f"asset {name!r}: dependency {dep_name!r} is listed twice")
        seen.add(dep_name)


def _resolve(
    nodes: Iterable[NodeSpec],
) -> tuple[list[str], list[list[int]], list[list[DepType]]]:
    """Names in input order, parent ids and edge types; raise on bad input."""
    names: list[str] = []
    raw: list[Sequence[tuple[str, DepType]]] = []
    for name, deps in nodes:
        names.append(name)
        raw.append(deps if isinstance(deps, list | tuple) else list(deps))
    index = {name: node for node, name in enumerate(names)}
    if len(index) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise DefinitionError(f"asset {name!r} is defined twice")
            seen.add(name)
    get = index.get
    valid = _VALID_TYPES.issuperset
    parents: list[list[int]] = []
    types: list[list[DepType]] = []
    for node, deps in enumerate(raw):
        if not deps:
            parents.append([])
            types.append([])
            continue
        ids = [get(dep_name, -1) for dep_name, _ in deps]
        kinds = [dep_type for _, dep_type in deps]
        if -1 in ids or not valid(kinds) or (len(ids) > 1 and len(set(ids)) != len(ids)):
            _bad_dependency(names[node], deps, names)
        parents.append(ids)
        types.append(kinds)
    return names, parents, types


class AssetGraph:
    """An immutable DAG of assets; edges carry a dependency type.

    Args:
        nodes: ``(name, [(dependency_name, dependency_type), ...])`` per asset.

    Raises:
        DefinitionError: a name is repeated, or a dependency is not defined (the
            message suggests the closest name).
        CycleError: the dependencies form a cycle (one cycle path is named).
    """

    __slots__ = ("_bounds", "_children", "_index", "_names", "_parent_types", "_parents", "_plan")

    def __init__(self, nodes: Iterable[NodeSpec]) -> None:
        # Construction allocates ~one container per node and edge; with the cyclic
        # garbage collector running, its passes over the growing heap double the time
        # for 100,000 assets. Nothing built here is cyclic, so pause it meanwhile.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._build(nodes)
        finally:
            if collecting:
                gc.enable()

    def _build(self, nodes: Iterable[NodeSpec]) -> None:
        names, parents, types = _resolve(nodes)
        children: list[list[int]] = [[] for _ in names]
        for node, ids in enumerate(parents):
            for parent in ids:
                children[parent].append(node)
        levels = topological_levels(names, parents, children)
        order = [node for level in levels for node in level]
        if len(order) != len(names):
            placed = bytearray(len(names))
            for node in order:
                placed[node] = 1
            raise CycleError([names[n] for n in find_cycle(names, parents, placed)])
        # Renumber so that ids follow the topological order.
        new_id = [0] * len(names)
        for position, old in enumerate(order):
            new_id[old] = position
        new_parents = [tuple([new_id[p] for p in parents[old]]) for old in order]
        new_children: list[list[int]] = [[] for _ in order]
        for node, parent_ids in enumerate(new_parents):  # ascending: children come out sorted
            for parent in parent_ids:
                new_children[parent].append(node)
        self._names: tuple[str, ...] = tuple([names[old] for old in order])
        self._index: dict[str, int] = {name: i for i, name in enumerate(self._names)}
        self._parents: tuple[tuple[int, ...], ...] = tuple(new_parents)
        self._parent_types: tuple[tuple[DepType, ...], ...] = tuple(
            [tuple(types[old]) for old in order]
        )
        self._children: tuple[tuple[int, ...], ...] = tuple([tuple(c) for c in new_children])
        bounds = [0]
        for level in levels:
            bounds.append(bounds[-1] + len(level))
        self._bounds: tuple[int, ...] = tuple(bounds)
        self._plan: ExecutionPlan | None = None

    # -- basics -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __repr__(self) -> str:
        return f"AssetGraph({len(self._names)} assets, {len(self._bounds) - 1} levels)"

    @property
    def names(self) -> tuple[str, ...]:
        """Every asset name, in topological order."""
        return self._names

    def node_id(self, name: str) -> int:
        """The int id of `name` (its topological position).

        Raises:
            SelectionError: no asset has that name (the message suggests one).
        """
        node = self._index.get(name)
        if node is None:
            raise SelectionError(f"unknown asset {name!r}" + did_you_mean(name, self._names))
        return node

    def names_of(self, ids: Iterable[int]) -> tuple[str, ...]:
        """The names of `ids`, in the order given."""
        names = self._names
        return tuple([names[i] for i in ids])

    def dependencies(self, name: str) -> tuple[tuple[str, DepType], ...]:
        """``(upstream name, type)`` for each direct dependency of `name`, declared order."""
        node = self.node_id(name)
        names = self._names
        return tuple(
            (names[p], t)
            for p, t in zip(self._parents[node], self._parent_types[node], strict=True)
        )

    def dependents(self, name: str) -> tuple[str, ...]:
        """Direct dependents of `name`, in topological order."""
        return self.names_of(self._children[self.node_id(name)])

    def edges(self) -> Iterator[Edge]:
        """Every edge, pointing downstream, ordered by the downstream asset."""
        names = self._names
        for node, (ids, types) in enumerate(zip(self._parents, self._parent_types, strict=True)):
            for parent, dep_type in zip(ids, types, strict=True):
                yield Edge(names[parent], names[node], dep_type)

    # -- planning -----------------------------------------------------------------------

    def plan(self) -> ExecutionPlan:
        """The execution plan: minimal levels, names sorted in each (computed once)."""
        if self._plan is None:
            names, bounds = self._names, self._bounds
            levels = tuple([names[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)])
            self._plan = ExecutionPlan(levels=levels, order=names)
        return self._plan

    def level_of(self, name: str) -> int:
        """The level (0 for roots) `name` is planned in."""
        node = self.node_id(name)
        bounds = self._bounds
        low, high = 0, len(bounds) - 1
        while high - low > 1:  # the level k with bounds[k] <= node < bounds[k + 1]
            middle = (low + high) // 2
            if bounds[middle] <= node:
                low = middle
            else:
                high = middle
        return low

    # -- lineage ------------------------------------------------------------------------

    def upstream_ids(self, node: int, depth: int | None = None) -> list[int]:
        """Ids `node` depends on within `depth` edges (None: all), sorted."""
        return reach(self._parents, node, depth)

    def downstream_ids(self, node: int, depth: int | None = None) -> list[int]:
        """Ids depending on `node` within `depth` edges (None: all), sorted."""
        return reach(self._children, node, depth)

    def upstream(self, name: str, depth: int | None = None) -> tuple[str, ...]:
        """Assets `name` depends on, within `depth` edges (None: all), topological order.

        Raises:
            SelectionError: unknown asset.
            ValueError: `depth` is not None or an int >= 1.
        """
        check_depth(depth)
        names = self._names
        return tuple([names[i] for i in reach(self._parents, self.node_id(name), depth)])

    def downstream(self, name: str, depth: int | None = None) -> tuple[str, ...]:
        """Assets depending on `name`, within `depth` edges (None: all), topological order.

        Raises:
            SelectionError: unknown asset.
            ValueError: `depth` is not None or an int >= 1.
        """
        check_depth(depth)
        names = self._names
        return tuple([names[i] for i in reach(self._children, self.node_id(name), depth)])

    def lineage(self, name: str, depth: int | None = None) -> Lineage:
        """Both directions plus the typed edges among the assets found, for display."""
        check_depth(depth)
        node = self.node_id(name)
        up = reach(self._parents, node, depth)
        down = reach(self._children, node, depth)
        up_side = set(up)
        down_side = set(down)
        down_side.add(node)
        names, parents, types = self._names, self._parents, self._parent_types
        edges: list[Edge] = []
        for side, members in ((up_side, [*up, node]), (down_side, down)):
            for child in members:
                for parent, dep_type in zip(parents[child], types[child], strict=True):
                    if parent in side:
                        edges.append(Edge(names[parent], names[child], dep_type))
        return Lineage(
            asset=name,
            depth=depth,
            upstream=self.names_of(up),
            downstream=self.names_of(down),
            edges=tuple(edges),
        )

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, Sequence[str]]]) -> AssetGraph:
        """A graph from ``(name, [dependency names])`` with every edge of type ``data``."""
        return cls((name, [(dep, "data") for dep in deps]) for name, deps in pairs)
