"""The Python API and the ``servo`` command share one home: each sees the other's runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import servo
from servo import asset

from ._cli import run_json, write

pytestmark = pytest.mark.e2e

ASYNC_DEFS = """
import asyncio
from servo import asset

@asset
async def fetched() -> list[int]:
    await asyncio.sleep(0.01)
    return [1, 2, 3]

@asset
async def squared(fetched: list[int]) -> list[int]:
    await asyncio.sleep(0)
    return [n * n for n in fetched]

@asset
def summed(squared: list[int]) -> int:
    return sum(squared)
"""


@asset
def greeting() -> str:
    return "hello"


@asset
def shout(greeting: str) -> str:
    return greeting.upper()


@pytest.fixture(autouse=True)
def no_servo_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SERVO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_a_python_run_in_a_home_is_listed_by_servo_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = servo.materialize([greeting, shout], home=home)
    assert result.success
    listed = run_json("runs", "list", "--home", str(home))
    assert listed["source"] == "catalog"
    assert [r["run_id"] for r in listed["runs"]] == [result.run_id]
    shown = run_json("runs", "show", result.run_id, "--home", str(home))
    assert shown["tasks"] == {"greeting": "succeeded", "shout": "succeeded"}


def test_async_assets_run_in_worker_processes_and_load_value_reads_them(tmp_path: Path) -> None:
    defs = write(tmp_path / "definitions.py", ASYNC_DEFS)
    home = tmp_path / "home"
    done = run_json("materialize", "--defs", str(defs), "--home", str(home), "--processes")
    assert done["status"] == "succeeded", done["errors"]
    assert done["tasks"] == {"fetched": "succeeded", "squared": "succeeded", "summed": "succeeded"}
    assert servo.load_value("squared", home=home) == [1, 4, 9]
    assert servo.load_value("summed", home=home, run_id=done["run_id"]) == 14
