"""`Definitions`: whole-project validation and the graph it exposes."""

from __future__ import annotations

from typing import Any

import pytest

from servo import AssetDep, Definitions, asset, workflow
from servo.errors import CycleError, DefinitionError
from servo.graph import AssetGraph


@asset
def z() -> int:
    return 0


@asset
def b(z: int) -> int:
    return z


@asset
def a(z: int) -> int:
    return z


@asset(dependencies=["a", AssetDep("b", "control")])
def top(a: int) -> int:
    return a


def test_assets_in_topological_order_with_graph() -> None:
    defs = Definitions(assets=[top, b, a, z])
    assert list(defs.assets) == ["z", "a", "b", "top"]
    assert defs.assets["top"] is top._servo_asset  # type: ignore[attr-defined]
    assert isinstance(defs.graph, AssetGraph)
    assert defs.graph.plan().levels == (("z",), ("a", "b"), ("top",))
    assert defs.graph.dependencies("top") == (("a", "data"), ("b", "control"))
    assert len(defs) == 4
    assert defs.source is None


def test_definition_objects_and_duplicates_by_identity_are_accepted() -> None:
    defs = Definitions(assets=[z, z._servo_asset, a])  # type: ignore[attr-defined]
    assert list(defs.assets) == ["z", "a"]


def test_workflow_assets_are_included() -> None:
    @workflow(executor="local")
    def nightly() -> None:
        top(a(z()))
        b(z())

    defs = Definitions(assets=[z], workflows=[nightly])
    assert set(defs.assets) == {"z", "a", "b", "top"}
    assert list(defs.workflows) == ["nightly"]
    assert defs.workflows["nightly"].executor == "local"


def test_duplicate_asset_name_names_both_functions() -> None:
    def other() -> None: ...

    clash = asset(name="a")(other)
    with pytest.raises(DefinitionError) as info:
        Definitions(assets=[z, a, clash])
    message = str(info.value)
    assert message.startswith("asset name 'a' is defined twice: ")
    assert f"{__name__}.a" in message
    assert "test_duplicate_asset_name_names_both_functions.<locals>.other" in message


def test_unknown_dependency_suggests_a_name() -> None:
    @asset(dependencies=["zz"])
    def needs_zz() -> None: ...

    with pytest.raises(DefinitionError) as info:
        Definitions(assets=[z, needs_zz])
    assert (
        str(info.value)
        == "asset 'needs_zz' depends on 'zz', which is not defined; did you mean 'z'?"
    )


def test_unknown_dependency_without_close_name() -> None:
    @asset
    def lonely(qwertyuiop: Any) -> None: ...

    with pytest.raises(DefinitionError, match=r"depends on 'qwertyuiop', which is not defined$"):
        Definitions(assets=[z, lonely])


def test_cycle_names_the_path() -> None:
    @asset(name="c1", dependencies=["c3"])
    def c1() -> None: ...

    @asset(name="c2", dependencies=["c1"])
    def c2() -> None: ...

    @asset(name="c3", dependencies=["c2"])
    def c3() -> None: ...

    with pytest.raises(CycleError) as info:
        Definitions(assets=[c1, c2, c3, z])
    assert info.value.cycle == ["c1", "c2", "c3", "c1"]
    assert str(info.value) == "dependency cycle: c1 -> c2 -> c3 -> c1"


def test_items_must_be_assets_and_workflows() -> None:
    with pytest.raises(DefinitionError, match="takes @asset functions, not function"):
        Definitions(assets=[lambda: None])
    with pytest.raises(DefinitionError, match="takes @workflow functions"):
        Definitions(workflows=[z])


def test_duplicate_workflow_names() -> None:
    @workflow(name="w")
    def w1() -> None:
        z()

    @workflow(name="w")
    def w2() -> None:
        z()

    with pytest.raises(DefinitionError, match="workflow name 'w' is defined twice"):
        Definitions(workflows=[w1, w2])


def test_empty_definitions_are_valid() -> None:
    defs = Definitions()
    assert len(defs) == 0
    assert defs.graph.plan().levels == ()
