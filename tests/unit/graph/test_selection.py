"""Selection expressions."""

from __future__ import annotations

import pytest

from servo.errors import SelectionError
from servo.graph import AssetGraph, select


@pytest.fixture
def graph() -> AssetGraph:
    # a -> b -> c -> d, a -> x, e alone
    return AssetGraph.from_pairs(
        [("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"]), ("x", ["a"]), ("e", [])]
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("c", ("c",)),
        ("+c", ("a", "b", "c")),
        ("c+", ("c", "d")),
        ("1+c", ("b", "c")),
        ("2+d", ("b", "c", "d")),
        ("a+1", ("a", "b", "x")),
        ("+c+", ("a", "b", "c", "d")),
        ("1+c+1", ("b", "c", "d")),
        ("*", ("a", "e", "b", "x", "c", "d")),
        ("d,e", ("e", "d")),
        ("d e", ("e", "d")),
        ("  d ,  e  ", ("e", "d")),
        ("c+ +c", ("a", "b", "c", "d")),
        ("e, *", ("a", "e", "b", "x", "c", "d")),
    ],
)
def test_selectors(graph: AssetGraph, expression: str, expected: tuple[str, ...]) -> None:
    assert select(graph, expression) == expected


def test_unknown_asset_suggests(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError, match=r"^unknown asset 'dd'; did you mean 'd'\?$"):
        select(graph, "+dd")


@pytest.mark.parametrize("expression", ["", "  ,", "a++", "++a", "a-b", "+", "2a", "a+b"])
def test_unparsable(graph: AssetGraph, expression: str) -> None:
    with pytest.raises(SelectionError):
        select(graph, expression)


def test_zero_depth_is_refused(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError, match="a depth must be >= 1"):
        select(graph, "0+c")
