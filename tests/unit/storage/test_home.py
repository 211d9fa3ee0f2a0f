"""Which homes can be used, and the messages for those that cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo.errors import HomeError
from servo.storage import home as home_module
from servo.storage.home import check_home, home_problem


def test_usable_homes(tmp_path: Path) -> None:
    assert home_problem(tmp_path, write=True) is None  # an existing directory
    assert home_problem(tmp_path / "new", write=True) is None  # created on first write


def test_a_file_is_not_a_home(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("x")
    with pytest.raises(HomeError, match=r"is not a directory: move that file away.*--home"):
        check_home(tmp_path / "home", write=False)


def test_a_missing_parent_is_not_created(tmp_path: Path) -> None:
    home = tmp_path / "a" / "b"
    with pytest.raises(HomeError, match=rf"mkdir -p {tmp_path / 'a'}"):
        check_home(home, write=False)
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    assert "not a directory" in (home_problem(tmp_path / "f" / "home", write=False) or "")


def test_read_only_matters_only_for_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(home_module.os, "access", lambda *_: False)
    assert home_problem(tmp_path, write=False) is None
    assert "is read-only" in (home_problem(tmp_path, write=True) or "")
    assert "cannot be created" in (home_problem(tmp_path / "new", write=True) or "")
