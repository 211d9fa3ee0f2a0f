"""Property tests: plans, cycles, lineage and selection on random graphs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servo.errors import CycleError
from servo.graph import AssetGraph, DepType, select

Spec = list[tuple[str, list[tuple[str, DepType]]]]
TYPES: tuple[DepType, ...] = ("data", "metadata", "control")


@st.composite
def dags(draw: st.DrawFn, max_size: int = 25) -> Spec:
    """A random DAG (edges only from earlier to later nodes), listed in random order."""
    size = draw(st.integers(min_value=1, max_value=max_size))
    names = draw(
        st.lists(
            st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
            min_size=size,
            max_size=size,
            unique=True,
        )
    )
    spec: Spec = []
    for index, name in enumerate(names):
        parents = draw(st.sets(st.integers(0, index - 1), max_size=4)) if index else set()
        spec.append((name, [(names[p], draw(st.sampled_from(TYPES))) for p in sorted(parents)]))
    return draw(st.permutations(spec))


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> Spec:
    """A random graph with at least one cycle (random extra edges may add more)."""
    size = draw(st.integers(min_value=1, max_value=15))
    names = [f"n{i}" for i in range(size)]
    deps: dict[str, set[str]] = {name: set() for name in names}
    loop = draw(st.lists(st.sampled_from(names), min_size=1, max_size=size, unique=True))
    for upstream, downstream in zip(loop, loop[1:] + loop[:1], strict=True):
        deps[downstream].add(upstream)
    for _ in range(draw(st.integers(0, 2 * size))):
        deps[draw(st.sampled_from(names))].add(draw(st.sampled_from(names)))
    spec: Spec = [(name, [(d, "data") for d in sorted(deps[name])]) for name in names]
    return draw(st.permutations(spec))


def parents_of(spec: Spec) -> dict[str, set[str]]:
    return {name: {dep for dep, _ in deps} for name, deps in spec}


def naive_reach(adjacency: dict[str, set[str]], start: str, depth: int | None) -> set[str]:
    """Reference: expand the frontier one step at a time, as sets."""
    found: set[str] = set()
    frontier = {start}
    steps = 0
    while frontier and (depth is None or steps < depth):
        frontier = {n for node in frontier for n in adjacency[node]} - found - {start}
        found |= frontier
        steps += 1
    return found


def children_of(spec: Spec) -> dict[str, set[str]]:
    children: dict[str, set[str]] = {name: set() for name, _ in spec}
    for name, deps in spec:
        for dep, _ in deps:
            children[dep].add(name)
    return children


def in_order(names: set[str], order: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in order if n in names)


@given(dags())
def test_order_respects_every_edge(spec: Spec) -> None:
    order = AssetGraph(spec).plan().order
    position = {name: i for i, name in enumerate(order)}
    assert sorted(order) == sorted(name for name, _ in spec)
    for name, deps in spec:
        for dep, _ in deps:
            assert position[dep] < position[name]


@given(dags())
def test_levels_are_minimal_partition_and_sorted(spec: Spec) -> None:
    plan = AssetGraph(spec).plan()
    level = {name: k for k, names in enumerate(plan.levels) for name in names}
    assert sum(len(names) for names in plan.levels) == len(spec) == len(level)
    assert all(names for names in plan.levels)
    assert all(list(names) == sorted(names) for names in plan.levels)
    assert plan.order == tuple(name for names in plan.levels for name in names)
    for name, deps in spec:
        expected = 1 + max((level[dep] for dep, _ in deps), default=-1)
        assert level[name] == expected


@given(dags(), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_input_order(spec: Spec, rnd: object) -> None:
    shuffled = list(spec)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert AssetGraph(shuffled).plan() == AssetGraph(spec).plan()


@given(cyclic_graphs())
def test_named_cycle_is_a_real_cycle(spec: Spec) -> None:
    parents = parents_of(spec)
    with pytest.raises(CycleError) as info:
        AssetGraph(spec)
    cycle = info.value.cycle
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for upstream, downstream in itertools.pairwise(cycle):
        assert upstream in parents[downstream]
    assert str(info.value) == "dependency cycle: " + " -> ".join(cycle)


@settings(max_examples=60)
@given(dags(), st.data())
def test_lineage_matches_naive_reference(spec: Spec, data: st.DataObject) -> None:
    graph = AssetGraph(spec)
    order = graph.plan().order
    parents, children = parents_of(spec), children_of(spec)
    name = data.draw(st.sampled_from([n for n, _ in spec]))
    depth = data.draw(st.none() | st.integers(1, 6))
    up = naive_reach(parents, name, depth)
    down = naive_reach(children, name, depth)
    assert graph.upstream(name, depth) == in_order(up, order)
    assert graph.downstream(name, depth) == in_order(down, order)
    lineage = graph.lineage(name, depth)
    assert (lineage.upstream, lineage.downstream) == (in_order(up, order), in_order(down, order))
    types = {(dep, n): t for n, deps in spec for dep, t in deps}
    for edge in lineage.edges:
        assert types[(edge.upstream, edge.downstream)] == edge.type
    expected_edges = {(p, c) for c in up | {name} for p in parents[c] if p in up} | {
        (p, c) for c in down for p in parents[c] if p in down | {name}
    }
    assert {(e.upstream, e.downstream) for e in lineage.edges} == expected_edges


@settings(max_examples=60)
@given(dags(), st.data())
def test_selection_is_the_union_of_lineage(spec: Spec, data: st.DataObject) -> None:
    graph = AssetGraph(spec)
    names = [n for n, _ in spec]
    first, second = data.draw(st.sampled_from(names)), data.draw(st.sampled_from(names))
    expected = {first, second, *graph.upstream(first), *graph.downstream(second, 2)}
    assert select(graph, f"+{first}, {second}+2") == in_order(expected, graph.plan().order)
