"""`@workflow`: assets discovered from the function's code without calling it."""

from __future__ import annotations

import types
from typing import Any

import pytest

from servo import asset, workflow
from servo.errors import DefinitionError
from servo.sdk.workflow import WorkflowDefinition, discover_assets


@asset
def extract() -> int:
    return 1


@asset
def transform(extract: int) -> int:
    return extract + 1


@asset
def load(transform: int) -> int:
    return transform


pipelines = types.ModuleType("pipelines")
pipelines.publish = asset(name="publish")(lambda: None)  # type: ignore[attr-defined]
pipelines.not_an_asset = len  # type: ignore[attr-defined]

CALLED: list[str] = []


def test_bare_workflow_discovers_globals_in_first_reference_order() -> None:
    @workflow
    def etl() -> None:
        CALLED.append("etl")
        value = transform(extract())
        load(value)
        load(transform(extract()))

    definition = etl._servo_workflow  # type: ignore[attr-defined]
    assert isinstance(definition, WorkflowDefinition)
    assert definition.name == "etl"
    assert definition.executor is None
    assert definition.asset_names == ("transform", "extract", "load")
    assert CALLED == []  # discovery never calls the function


def test_options_and_module_attributes() -> None:
    @workflow(name="nightly", executor="cloud_run")
    def flow() -> None:
        pipelines.publish()
        pipelines.not_an_asset([])

    definition = flow._servo_workflow  # type: ignore[attr-defined]
    assert (definition.name, definition.executor) == ("nightly", "cloud_run")
    assert definition.asset_names == ("publish",)


def test_nested_code_and_closure_cells() -> None:
    @asset
    def local_asset() -> int:
        return 3

    @workflow
    def flow() -> list[Any]:
        inner = lambda: local_asset()  # noqa: E731, PLW0108
        return [load(x) for x in (extract(), inner())]

    names = flow._servo_workflow.asset_names  # type: ignore[attr-defined]
    # The lambda's code is loaded first; comprehension order varies across Pythons.
    assert names[0] == "local_asset"
    assert sorted(names) == ["extract", "load", "local_asset"]


def test_function_still_callable() -> None:
    @workflow
    def runnable() -> int:
        return int(load(transform(extract())))

    assert runnable() == 2


def test_no_assets_is_an_error() -> None:
    with pytest.raises(DefinitionError, match=r"^workflow 'empty' calls no assets$"):

        @workflow
        def empty() -> None:
            print("nothing")


def test_bad_options() -> None:
    with pytest.raises(DefinitionError, match="invalid name 'bad name'"):
        workflow(name="bad name")(lambda: extract())  # noqa: PLW0108
    with pytest.raises(DefinitionError, match="or a non-empty str"):
        workflow(name="w", executor="")(lambda: extract())  # noqa: PLW0108
    with pytest.raises(DefinitionError, match="unknown executor 'kubernetes'"):
        workflow(name="w", executor="kubernetes")(lambda: extract())  # noqa: PLW0108


def test_discover_assets_of_non_function_is_empty() -> None:
    assert discover_assets(len) == ()
