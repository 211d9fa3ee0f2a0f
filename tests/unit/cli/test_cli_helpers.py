"""The CLI's pure helpers: ISO times, JSON error kinds, materialize's selection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servo import Definitions, asset, workflow
from servo.cli.main import error_kind
from servo.cli.render import iso_time, time_fields
from servo.cli.selection import GLOB_HINT, run_selection
from servo.errors import CatalogUnavailableError, CycleError, SelectionError, ServoError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@given(st.integers(min_value=0, max_value=253402300799999999))  # up to 9999-12-31
def test_iso_time_is_the_same_instant_to_the_microsecond(us: int) -> None:
    text = iso_time(us)
    assert text is not None and text.endswith("Z") and len(text) == 27
    parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert parsed == EPOCH + dt.timedelta(microseconds=us)


def test_time_fields_keep_the_microseconds_and_none() -> None:
    assert time_fields("at", 1_796_293_651_541_211) == {
        "at": "2026-12-03T10:27:31.541211Z",
        "at_us": 1_796_293_651_541_211,
    }
    assert time_fields("at", None) == {"at": None, "at_us": None}


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ServoError("x"), "error"),
        (SelectionError("x"), "selection"),
        (CycleError("x"), "cycle"),
        (CatalogUnavailableError("x"), "catalog_unavailable"),
        (ValueError("a click usage error"), "usage"),
    ],
)
def test_error_kind(error: BaseException, kind: str) -> None:
    assert error_kind(error) == kind


@asset
def a() -> int:
    return 1


@asset
def b(a: int) -> int:
    return a + 1


@asset
def c() -> int:
    return 3


@workflow
def pair() -> None:
    a()
    b()


DEFS = Definitions(assets=[a, b, c], workflows=[pair])


def test_arguments_are_joined_and_checked(tmp_path: Path) -> None:
    assert run_selection(DEFS, ["c", "a+"], cwd=tmp_path) == "c, a+"
    assert run_selection(DEFS, [], cwd=tmp_path) is None
    with pytest.raises(SelectionError, match="empty selection"):
        run_selection(DEFS, [""], cwd=tmp_path)


def test_a_file_name_selector_gets_the_glob_hint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "data").mkdir()
    for names in (["a", "notes.txt"], ["data"]):
        with pytest.raises(SelectionError) as caught:
            run_selection(DEFS, names, cwd=tmp_path)
        assert str(caught.value).endswith(GLOB_HINT)
    with pytest.raises(SelectionError, match="unknown asset 'zz'") as caught:
        run_selection(DEFS, ["zz"], cwd=tmp_path)
    assert GLOB_HINT not in str(caught.value)


def test_workflow_alone_with_a_selection_and_unknown(tmp_path: Path) -> None:
    assert run_selection(DEFS, [], "pair", cwd=tmp_path) == "a, b"
    assert run_selection(DEFS, ["+b", "c"], "pair", cwd=tmp_path) == "a, b"
    assert run_selection(DEFS, ["b"], "pair", cwd=tmp_path) == "b"
    with pytest.raises(SelectionError, match="selects none of the assets of workflow 'pair'"):
        run_selection(DEFS, ["c"], "pair", cwd=tmp_path)
    with pytest.raises(SelectionError, match="did you mean 'pair'"):
        run_selection(DEFS, [], "pairs", cwd=tmp_path)
