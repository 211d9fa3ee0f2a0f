"""benchmarks.workloads: the graphs and values every tool of the comparison runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.workloads import (
    Node,
    expected,
    nodes,
    scaled_expected,
    servo_source,
    values_of,
    write_scaled,
    write_workload,
)

from servo.sdk.definitions import Definitions
from servo.sdk.loader import load_definitions


def _evaluate(defs: Definitions) -> dict[str, object]:
    """Every asset's value, computed by calling the loaded functions in graph order."""
    values: dict[str, object] = {}
    pending = dict(defs.assets)
    while pending:
        for name, found in list(pending.items()):
            parents = [dep.name for dep in found.dependencies]
            if all(p in values for p in parents):
                values[name] = found.call({p: values[p] for p in parents})
                del pending[name]
    return values


def test_w1_is_a_chain_from_one_to_two_hundred() -> None:
    values = expected("W1")
    assert len(values) == 200
    assert values["a_0"] == 1
    assert values["a_199"] == 200
    assert [n.parents for n in nodes("W1")[1:3]] == [("a_0",), ("a_1",)]


def test_w2_is_a_root_and_a_thousand_children() -> None:
    values = expected("W2")
    assert len(values) == 1001
    assert values["root"] == 1
    assert values["c_0"] == 1
    assert values["c_999"] == 1000


def test_w3_has_ten_layers_of_a_hundred_with_three_parents_each() -> None:
    graph = nodes("W3")
    assert len(graph) == 1000
    assert {len(n.parents) for n in graph[100:]} == {3}
    assert all(len(set(n.parents)) == 3 for n in graph[100:])
    values = expected("W3")
    assert values["n_0_99"] == 100
    first = graph[100]
    assert values[first.name] == sum(values[p] for p in first.parents)
    assert expected("W3") == values  # the seeded draw is the same every time


def test_w4_sleeps_and_returns_zero() -> None:
    graph = nodes("W4")
    assert len(graph) == 64
    assert {n.sleep_s for n in graph} == {0.5}
    assert set(expected("W4").values()) == {0}
    assert "time.sleep(0.5)" in servo_source(graph)


def test_expression_names_the_parents_and_the_constant() -> None:
    assert Node("x", ("a", "b"), 0).expression() == "a + b"
    assert Node("x", ("a",), 7).expression() == "a + 7"
    assert Node("x", (), 0).expression() == "0"
    assert values_of([Node("a", (), 2), Node("b", ("a", "a"), 1)]) == {"a": 2, "b": 5}


@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_the_servo_definitions_compute_the_expected_values(name: str, tmp_path: Path) -> None:
    path, values = write_workload(name, tmp_path)
    defs = load_definitions(str(path))
    assert {a: [d.name for d in defs.assets[a].dependencies] for a in defs.assets} == {
        n.name: list(n.parents) for n in nodes(name)
    }
    assert _evaluate(defs) == values


@pytest.mark.parametrize("shape", ["wide", "chain"])
def test_the_scaled_graphs_compute_the_expected_values(shape: str, tmp_path: Path) -> None:
    path, values = write_scaled(shape, 7, tmp_path)  # type: ignore[arg-type]
    defs = load_definitions(str(path))
    assert len(defs.assets) == 7
    assert _evaluate(defs) == values
    if shape == "wide":
        assert values == {"root": 1} | {f"c_{i}": 1 + i for i in range(6)}
    else:
        assert values == {f"a_{i}": i + 1 for i in range(7)}
        assert [d.name for d in defs.assets["a_6"].dependencies] == ["a_5"]


def test_a_scaled_graph_needs_two_assets() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        scaled_expected("wide", 1)
