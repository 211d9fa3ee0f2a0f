"""`@asset`: definitions, dependency inference, validation messages and `call`."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from servo import AssetDep, RetryPolicy, asset
from servo.errors import DefinitionError
from servo.sdk.asset import AssetDefinition, definition_of


def test_bare_decorator_returns_the_function_unchanged() -> None:
    def raw() -> int:
        return 41

    decorated = asset(raw)
    assert decorated is raw
    assert raw() == 41
    definition = raw._servo_asset  # type: ignore[attr-defined]
    assert isinstance(definition, AssetDefinition)
    assert definition.name == "raw"
    assert definition.fn is raw
    assert definition.dependencies == ()
    assert definition.params == ()


def test_options_are_recorded() -> None:
    policy = RetryPolicy(max_attempts=3)

    @asset(
        name="orders_v2",
        description="Orders.",
        owner="team-data",
        tags={"layer": "raw"},
        asset_type="table",
        retry=policy,
        timeout=30,
    )
    def orders() -> None:
        """Not this line."""

    d = definition_of(orders)
    assert d is not None
    assert (d.name, d.description, d.owner, d.asset_type, d.retry, d.timeout) == (
        "orders_v2",
        "Orders.",
        "team-data",
        "table",
        policy,
        30.0,
    )
    assert dict(d.tags) == {"layer": "raw"}


@pytest.mark.parametrize(
    ("retry", "hint"),
    [(3, "RetryPolicy(max_attempts=3)"), ("3", "RetryPolicy(max_attempts=3)"), (True, "")],
)
def test_a_retry_that_is_not_a_policy_is_rejected_with_the_fix(retry: object, hint: str) -> None:
    with pytest.raises(DefinitionError, match="retry must be a RetryPolicy") as caught:

        @asset(retry=retry)
        def orders() -> None: ...

    assert "asset 'orders'" in str(caught.value) and hint in str(caught.value)


def test_description_defaults_to_first_docstring_line() -> None:
    @asset()
    def documented() -> None:
        """

        First line here.

        More detail.
        """

    @asset
    def undocumented() -> None:
        pass

    assert documented._servo_asset.description == "First line here."  # type: ignore[attr-defined]
    assert undocumented._servo_asset.description is None  # type: ignore[attr-defined]


def test_definition_is_frozen_and_hashable() -> None:
    @asset(tags={"a": "b"})
    def frozen() -> None: ...

    d = frozen._servo_asset  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"
    with pytest.raises(TypeError):
        d.tags["a"] = "c"
    assert hash(d) == hash(d)


def test_tags_are_copied() -> None:
    tags = {"a": "b"}

    @asset(tags=tags)
    def tagged() -> None: ...

    tags["a"] = "changed"
    assert tagged._servo_asset.tags["a"] == "b"  # type: ignore[attr-defined]


# -- inference ------------------------------------------------------------------------


def test_dependencies_inferred_from_parameters_without_default() -> None:
    @asset
    def report(orders: Any, customers: Any, context: Any, limit: int = 5) -> None: ...

    d = report._servo_asset  # type: ignore[attr-defined]
    assert d.dependencies == (AssetDep("orders"), AssetDep("customers"))
    assert d.params == ("orders", "customers")
    assert d.takes_context is True


def test_var_args_and_kwargs_are_never_inferred() -> None:
    @asset
    def flexible(*args: Any, **kwargs: Any) -> None: ...

    assert flexible._servo_asset.dependencies == ()  # type: ignore[attr-defined]


def test_keyword_only_parameters_are_inferred() -> None:
    @asset
    def kw(*, upstream: Any) -> None: ...

    assert kw._servo_asset.dependency_names == ("upstream",)  # type: ignore[attr-defined]


def test_positional_only_parameter_without_default_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"asset 'pos': parameter 'a' is positional-only"):

        @asset
        def pos(a: Any, /) -> None: ...


def test_inferred_parameter_name_must_be_a_valid_asset_name() -> None:
    with pytest.raises(DefinitionError, match=r"asset 'uni': invalid dependency name .*'données'"):

        @asset
        def uni(données: Any) -> None: ...  # noqa: PLC2401


# -- explicit dependencies ------------------------------------------------------------


def test_explicit_dependencies_of_every_kind() -> None:
    @asset
    def upstream_a() -> None: ...

    @asset(
        dependencies=[
            "plain",
            AssetDep("meta", type="metadata"),
            AssetDep("gate", type="control"),
            upstream_a,
        ]
    )
    def downstream(plain: Any, upstream_a: Any, gate: int = 0) -> None: ...

    d = downstream._servo_asset  # type: ignore[attr-defined]
    assert d.dependencies == (
        AssetDep("plain"),
        AssetDep("meta", "metadata"),
        AssetDep("gate", "control"),
        AssetDep("upstream_a"),
    )
    # control deps are never passed, even when a parameter has their name
    assert d.params == ("plain", "upstream_a")


def test_definition_objects_are_accepted_as_dependencies() -> None:
    @asset
    def source() -> None: ...

    @asset(dependencies=[source._servo_asset])  # type: ignore[attr-defined]
    def sink() -> None: ...

    assert sink._servo_asset.dependency_names == ("source",)  # type: ignore[attr-defined]


def test_explicit_data_dependency_not_in_signature_is_not_passed() -> None:
    @asset(dependencies=["a", "b"])
    def only_a(a: Any) -> Any:
        return a

    assert only_a._servo_asset.params == ("a",)  # type: ignore[attr-defined]


def test_kwargs_receive_every_data_dependency() -> None:
    @asset(dependencies=["a", "b", AssetDep("c", "control")])
    def everything(**upstream: Any) -> dict[str, Any]:
        return upstream

    d = everything._servo_asset  # type: ignore[attr-defined]
    assert d.params == ("a", "b")
    assert d.call({"a": 1, "b": 2, "c": 3, "zz": 4}) == {"a": 1, "b": 2}


def test_parameter_matching_no_dependency() -> None:
    expected = (
        "asset 'x': parameter 'p' matches no dependency; "
        "add it to dependencies=[...] or give it a default"
    )
    with pytest.raises(DefinitionError) as info:

        @asset(dependencies=["a"])
        def x(a: Any, p: Any) -> None: ...

    assert str(info.value) == expected


def test_parameter_naming_a_control_dependency() -> None:
    with pytest.raises(DefinitionError, match="parameter 'gate' names a control dependency"):

        @asset(dependencies=[AssetDep("gate", "control")])
        def x(gate: Any) -> None: ...


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["1abc", "has-dash", "", "a" * 129, "spa ce", "é"])
def test_invalid_names_say_the_rule(bad: str) -> None:
    with pytest.raises(DefinitionError) as info:
        asset(name=bad)(lambda: None)
    message = str(info.value)
    assert f"invalid name {bad!r}" in message
    assert "starts with a letter or underscore" in message
    assert "at most 128 characters" in message


def test_lambda_needs_an_explicit_name() -> None:
    with pytest.raises(DefinitionError, match=r"invalid name '<lambda>'"):
        asset(lambda: None)
    named = asset(name="from_lambda")(lambda: 1)
    assert named._servo_asset.name == "from_lambda"


def test_name_of_128_characters_is_fine() -> None:
    assert asset(name="a" * 128)(lambda: None)._servo_asset.name == "a" * 128


def test_depending_on_itself() -> None:
    with pytest.raises(DefinitionError, match=r"^asset 'loop' depends on itself$"):

        @asset(dependencies=["loop"])
        def loop() -> None: ...


def test_self_dependency_inferred() -> None:
    with pytest.raises(DefinitionError, match="asset 'me' depends on itself"):

        @asset
        def me(me: Any) -> None: ...


def test_duplicate_dependency() -> None:
    with pytest.raises(DefinitionError, match="asset 'dup': dependency 'a' is listed twice"):

        @asset(dependencies=["a", AssetDep("a", "control")])
        def dup() -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dependencies": "a"}, "dependencies must be a list of asset names or AssetDep, not str"),
        ({"dependencies": 3}, "dependencies must be a list"),
        ({"dependencies": [3]}, "a dependency must be an asset name, an AssetDep"),
        ({"dependencies": ["bad-name"]}, "invalid dependency name 'bad-name'"),
        ({"tags": ["a"]}, "tags must be a dict of str to str, not list"),
        ({"tags": {"a": 1}}, "tags must be a dict of str to str; got 'a': 1"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0, not 0"),
        ({"timeout": -1.5}, "timeout must be a number of seconds > 0"),
        ({"timeout": math.inf}, "timeout must be a number of seconds > 0"),
        ({"timeout": True}, "timeout must be a number of seconds, not bool"),
        ({"timeout": "10"}, "timeout must be a number of seconds, not str"),
        ({"owner": 5}, "owner must be a str, not int"),
        ({"description": ["x"]}, "description must be a str, not list"),
        ({"asset_type": 1}, "asset_type must be a str, not int"),
        ({"partitions": ["2024-01-01"]}, "partitions are not supported yet"),
        ({"name": 12}, "name must be a str, not int"),
    ],
)
def test_bad_options_name_the_asset(options: dict[str, Any], message: str) -> None:
    def subject() -> None: ...

    with pytest.raises(DefinitionError) as info:
        asset(**options)(subject)
    text = str(info.value)
    assert message in text
    assert text.startswith("asset ")


def test_asset_dep_type_is_checked() -> None:
    with pytest.raises(DefinitionError, match=r"type must be one of 'data', 'metadata', 'control'"):
        AssetDep("a", type="weird")  # type: ignore[arg-type]


def test_decorating_twice_is_refused() -> None:
    def twice() -> None: ...

    asset(twice)
    with pytest.raises(DefinitionError, match="already asset 'twice'"):
        asset(name="again")(twice)


def test_positional_non_callable_is_refused() -> None:
    with pytest.raises(DefinitionError, match=re.escape("pass options by keyword")):
        asset("name")  # type: ignore[call-overload]


# -- call -----------------------------------------------------------------------------


def test_call_passes_upstream_values_by_name_and_context() -> None:
    seen: dict[str, Any] = {}

    @asset(dependencies=["a", AssetDep("b", "metadata")])
    def target(a: int, context: Any, scale: int = 10) -> int:
        seen["context"] = context
        return a * scale

    d = target._servo_asset  # type: ignore[attr-defined]
    assert d.call({"a": 2, "b": "ignored"}, context="ctx") == 20
    assert seen["context"] == "ctx"
    assert d.call({"a": 3}) == 30
    assert seen["context"] is None


def test_call_with_a_missing_upstream_value() -> None:
    @asset
    def needs(a: Any) -> None: ...

    with pytest.raises(DefinitionError, match="asset 'needs': no upstream value for 'a'"):
        needs._servo_asset.call({})  # type: ignore[attr-defined]
