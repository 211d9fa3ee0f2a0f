"""`servo.materialize` in a temporary in-memory home: results, errors, selections."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import servo
from servo import Definitions, asset
from servo.errors import ConfigError, DefinitionError, SelectionError


@asset
def numbers() -> list[int]:
    return [1, 2, 3]


@asset
def total(numbers: list[int]) -> int:
    return sum(numbers)


@asset
def label(total: int) -> str:
    return f"total={total}"


@asset
def parity(numbers: list[int]) -> dict[str, int]:
    return {"even": sum(1 for n in numbers if n % 2 == 0)}


@asset
def broken(numbers: list[int]) -> int:
    raise ValueError(f"cannot use {len(numbers)} numbers")


@asset
def after_broken(broken: int) -> int:
    return broken


PIPELINE = [numbers, total, label, parity]


def test_success_returns_values_in_their_python_types() -> None:
    result = servo.materialize(PIPELINE)
    assert result.success
    assert result.run_status == "succeeded"
    assert result.errors == {}
    assert result.statuses == {
        "numbers": "succeeded",
        "total": "succeeded",
        "label": "succeeded",
        "parity": "succeeded",
    }
    assert result.value("numbers") == [1, 2, 3]
    assert result.value(total) == 6  # by @asset function too
    assert result.value("label") == "total=6"
    assert result.value("parity") == {"even": 1}
    assert result.status(label) == "succeeded"
    assert result.run_id in repr(result)


def test_a_definitions_object_and_asset_definitions_are_accepted() -> None:
    assert servo.materialize(Definitions(assets=PIPELINE)).value("label") == "total=6"
    defs = [numbers._servo_asset, total._servo_asset]  # type: ignore[attr-defined]
    assert servo.materialize(defs).value("total") == 6
    assert servo.materialize(numbers).value("numbers") == [1, 2, 3]


def test_failure_reports_type_message_and_traceback_and_skips_downstream() -> None:
    result = servo.materialize([numbers, total, broken, after_broken])
    assert not result.success
    assert result.run_status == "failed"
    assert result.statuses == {
        "numbers": "succeeded",
        "total": "succeeded",
        "broken": "failed",
        "after_broken": "skipped",
    }
    assert list(result.errors) == ["broken"]
    error = result.errors["broken"]
    assert (error.type, error.message, error.attempt) == ("ValueError", "cannot use 3 numbers", 1)
    assert error.traceback is not None
    assert "in broken" in error.traceback
    assert error.traceback.rstrip().endswith("ValueError: cannot use 3 numbers")
    assert str(error) == "ValueError: cannot use 3 numbers"
    assert result.value("total") == 6  # what succeeded is still readable


def test_the_value_of_an_asset_that_did_not_succeed_names_its_status_and_error() -> None:
    result = servo.materialize([numbers, broken, after_broken])
    with pytest.raises(servo.ValueNotFoundError, match=r"'broken' has no value: it failed") as exc:
        result.value("broken")
    assert "ValueError: cannot use 3 numbers" in str(exc.value)
    with pytest.raises(servo.ValueNotFoundError, match=r"was skipped .*did not succeed \(broken\)"):
        result.value(after_broken)


def test_unknown_assets_get_a_suggestion() -> None:
    result = servo.materialize(PIPELINE)
    with pytest.raises(SelectionError, match=r"'totl' is not in run .*did you mean 'total'\?"):
        result.value("totl")
    with pytest.raises(SelectionError, match="did you mean 'label'"):
        result.status("labl")
    with pytest.raises(SelectionError, match="did you mean 'total'"):
        servo.materialize(PIPELINE, "totl")
    with pytest.raises(TypeError, match="name an asset by its name or its @asset function"):
        result.value(42)


def test_a_selection_runs_a_subset_in_the_cli_syntax() -> None:
    result = servo.materialize(PIPELINE, "+total")
    assert list(result.statuses) == ["numbers", "total"]
    assert result.value("total") == 6
    union = servo.materialize(PIPELINE, ["+total", "parity"])
    assert set(union.statuses) == {"numbers", "total", "parity"}
    assert set(servo.materialize(PIPELINE, "numbers+1").statuses) == {"numbers", "total", "parity"}


@pytest.mark.parametrize("selection", ["", [], [" "]])
def test_an_empty_selection_is_refused(selection: str | list[str]) -> None:
    with pytest.raises(SelectionError, match="empty selection; pass selection=None"):
        servo.materialize(PIPELINE, selection)


def test_a_selection_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(SelectionError, match="not int"):
        servo.materialize(PIPELINE, [1])  # type: ignore[list-item]


def test_in_memory_homes_are_isolated_from_each_other_and_from_disk(tmp_path: Path) -> None:
    calls = itertools.count(1)

    @asset
    def counter() -> int:
        return next(calls)

    @asset
    def doubled(counter: int) -> int:
        return counter * 2

    first = servo.materialize([counter, doubled])
    second = servo.materialize([counter, doubled])
    assert first.run_id != second.run_id
    assert (first.value("counter"), second.value("counter")) == (1, 2)
    assert first.value("doubled") == 2  # the first result still reads its own home
    # The second home never saw the first run: `doubled` alone has no upstream value.
    with pytest.raises(DefinitionError, match="has never been materialized"):
        servo.materialize([counter, doubled], "doubled")
    assert list(tmp_path.iterdir()) == []  # nothing was written to the working directory


def test_the_same_idempotency_key_in_one_memory_home_is_not_shared() -> None:
    first = servo.materialize(PIPELINE, idempotency_key="k")
    second = servo.materialize(PIPELINE, idempotency_key="k")
    assert not first.resumed
    assert not second.resumed  # a fresh home each time


def test_raise_on_error_names_the_failed_assets_and_their_errors() -> None:
    with pytest.raises(servo.RunFailedError) as exc:
        servo.materialize([numbers, broken, after_broken], raise_on_error=True)
    message = str(exc.value)
    assert "broken failed (ValueError: cannot use 3 numbers)" in message
    assert "after_broken skipped" in message
    assert exc.value.run_id in message
    assert isinstance(exc.value, servo.ServoError)
    assert exc.value.result.errors["broken"].traceback is not None


def test_raise_on_error_returns_the_result_when_every_asset_succeeded() -> None:
    assert servo.materialize(PIPELINE, raise_on_error=True).success


def test_bad_arguments_say_what_is_expected() -> None:
    with pytest.raises(DefinitionError, match="takes a Definitions or a list of @asset"):
        servo.materialize("numbers")
    with pytest.raises(DefinitionError, match="not int"):
        servo.materialize([numbers, 3])
    with pytest.raises(ConfigError, match="concurrency must be an int >= 1"):
        servo.materialize(PIPELINE, concurrency=0)
    with pytest.raises(ConfigError, match="worker processes need a Servo home"):
        servo.materialize(PIPELINE, processes=True)
    with pytest.raises(DefinitionError, match="'total'"):
        servo.materialize([total])  # its upstream is missing


def test_tenant_and_concurrency_are_passed_to_the_run() -> None:
    result = servo.materialize(PIPELINE, tenant="acme", concurrency=1)
    assert result.success
    assert result.value("label") == "total=6"
