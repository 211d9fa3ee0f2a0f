"""`AssetGraph`: construction errors, plan, lineage and accessors."""

from __future__ import annotations

import pytest

from servo.errors import CycleError, DefinitionError, SelectionError
from servo.graph import AssetGraph, Edge, ExecutionPlan


def diamond() -> AssetGraph:
    return AssetGraph(
        [
            ("report", [("left", "data"), ("right", "metadata")]),
            ("right", [("root", "data")]),
            ("left", [("root", "control")]),
            ("root", []),
            ("solo", []),
        ]
    )


def test_plan_levels_are_sorted_and_minimal() -> None:
    plan = diamond().plan()
    assert isinstance(plan, ExecutionPlan)
    assert plan.levels == (("root", "solo"), ("left", "right"), ("report",))
    assert plan.order == ("root", "solo", "left", "right", "report")
    assert len(plan) == 5
    assert diamond().plan() == plan  # deterministic


def test_long_chain_sets_the_level_not_the_short_path() -> None:
    graph = AssetGraph.from_pairs([("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["a", "c"])])
    assert graph.plan().levels == (("a",), ("b",), ("c",), ("d",))
    assert graph.level_of("d") == 3
    assert graph.level_of("a") == 0


def test_accessors() -> None:
    graph = diamond()
    assert len(graph) == 5
    assert "root" in graph and "nope" not in graph
    assert list(graph) == list(graph.names) == list(graph.plan().order)
    assert graph.dependencies("report") == (("left", "data"), ("right", "metadata"))
    assert graph.dependents("root") == ("left", "right")
    assert graph.node_id("root") == 0
    assert graph.names_of([4, 0]) == ("report", "root")
    assert Edge("root", "left", "control") in list(graph.edges())
    assert len(list(graph.edges())) == 4
    assert repr(graph) == "AssetGraph(5 assets, 3 levels)"


def test_duplicate_name() -> None:
    with pytest.raises(DefinitionError, match=r"^asset 'a' is defined twice$"):
        AssetGraph.from_pairs([("a", []), ("a", [])])


def test_unknown_dependency_with_suggestion() -> None:
    with pytest.raises(DefinitionError) as info:
        AssetGraph.from_pairs([("orders", []), ("report", ["order"])])
    assert str(info.value) == (
        "asset 'report' depends on 'order', which is not defined; did you mean 'orders'?"
    )


def test_duplicate_dependency_and_bad_type() -> None:
    with pytest.raises(DefinitionError, match="dependency 'a' is listed twice"):
        AssetGraph([("a", []), ("b", [("a", "data"), ("a", "control")])])
    with pytest.raises(DefinitionError, match="unknown type 'strong'"):
        AssetGraph([("a", []), ("b", [("a", "strong")])])  # type: ignore[list-item]


def test_cycle_error_names_one_cycle_in_dependency_direction() -> None:
    with pytest.raises(CycleError) as info:
        AssetGraph.from_pairs(
            [("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", ["a"]), ("root", []), ("e", ["d"])]
        )
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert str(info.value) == "dependency cycle: a -> b -> c -> a"


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(CycleError) as info:
        AssetGraph.from_pairs([("a", ["a"])])
    assert info.value.cycle == ["a", "a"]


def test_upstream_and_downstream_with_depth() -> None:
    graph = AssetGraph.from_pairs(
        [("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"]), ("x", ["a"]), ("y", ["x", "d"])]
    )
    assert graph.upstream("d") == ("a", "b", "c")
    assert graph.upstream("d", depth=1) == ("c",)
    assert graph.upstream("d", depth=2) == ("b", "c")
    assert graph.upstream("a") == ()
    assert graph.downstream("a") == ("b", "x", "c", "d", "y")
    assert graph.downstream("a", depth=1) == ("b", "x")
    assert graph.downstream("a", depth=2) == ("b", "x", "c", "y")
    assert graph.downstream("y") == ()


def test_lineage_has_typed_edges() -> None:
    lineage = diamond().lineage("left")
    assert lineage.asset == "left"
    assert lineage.depth is None
    assert lineage.upstream == ("root",)
    assert lineage.downstream == ("report",)
    assert lineage.edges == (
        Edge("root", "left", "control"),
        Edge("left", "report", "data"),
    )


def test_lineage_of_the_sink_includes_all_edges_among_upstream() -> None:
    lineage = diamond().lineage("report", depth=2)
    assert lineage.upstream == ("root", "left", "right")
    assert lineage.downstream == ()
    assert set(lineage.edges) == {
        Edge("root", "left", "control"),
        Edge("root", "right", "data"),
        Edge("left", "report", "data"),
        Edge("right", "report", "metadata"),
    }


@pytest.mark.parametrize("depth", [0, -1, 1.5, True, "2"])
def test_bad_depth(depth: object) -> None:
    with pytest.raises(ValueError, match="depth must be None"):
        diamond().upstream("root", depth=depth)  # type: ignore[arg-type]


def test_unknown_asset_in_queries() -> None:
    with pytest.raises(SelectionError, match=r"^unknown asset 'rigth'; did you mean 'right'\?$"):
        diamond().downstream("rigth")
    with pytest.raises(SelectionError, match=r"^unknown asset 'zzzzzz'$"):
        diamond().lineage("zzzzzz")


def test_input_order_does_not_matter() -> None:
    pairs = [("c", ["a", "b"]), ("a", []), ("b", ["a"]), ("d", [])]
    assert AssetGraph.from_pairs(pairs).plan() == AssetGraph.from_pairs(pairs[::-1]).plan()


def test_dependencies_may_be_any_iterable() -> None:
    graph = AssetGraph((name, iter(deps)) for name, deps in [("a", []), ("b", [("a", "data")])])
    assert graph.plan().order == ("a", "b")


def test_large_chain_is_iterative() -> None:
    size = 50_000
    pairs = [(f"n{i}", [f"n{i - 1}"] if i else []) for i in range(size)]
    graph = AssetGraph.from_pairs(pairs)
    assert len(graph.plan().levels) == size
    assert len(graph.upstream(f"n{size - 1}")) == size - 1
    with pytest.raises(CycleError) as info:
        AssetGraph.from_pairs([("n0", [f"n{size - 1}"]), *pairs[1:]])
    assert len(info.value.cycle) == size + 1
