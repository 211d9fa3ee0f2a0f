"""`servo.load_value` and `servo.materialize(home=PATH)`: values kept in a Servo home."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import servo
from servo import asset
from servo.errors import ValueNotFoundError

calls = itertools.count(1)


@asset
def version() -> int:
    return next(calls)


@asset
def report(version: int) -> dict[str, int]:
    return {"version": version}


@asset
def fragile(version: int) -> int:
    if version >= 0:
        raise RuntimeError(f"version {version} is not supported")
    return version


def test_latest_value_and_value_of_a_given_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = servo.materialize([version, report], home=home)
    second = servo.materialize([version, report], home=home)
    assert second.value("version") == first.value("version") + 1
    assert servo.load_value("report", home=home) == second.value("report")
    assert servo.load_value(report, home=home, run_id=first.run_id) == first.value("report")
    assert servo.load_value(version, home=str(home)) == second.value("version")


def test_a_run_in_a_home_reads_the_upstream_values_earlier_runs_left(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = servo.materialize([version, report], home=home)
    downstream_only = servo.materialize([version, report], "report", home=home)
    assert list(downstream_only.statuses) == ["report"]
    assert downstream_only.value("report") == first.value("report")


def test_home_none_reads_servo_home_else_dot_servo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = servo.materialize([version], home=tmp_path / ".servo")  # cwd is tmp_path
    assert servo.load_value("version") == run.value("version")
    other = tmp_path / "elsewhere"
    elsewhere = servo.materialize([version], home=other)
    monkeypatch.setenv("SERVO_HOME", str(other))
    assert servo.load_value("version") == elsewhere.value("version")


def test_an_asset_never_materialized_says_what_to_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(ValueNotFoundError, match="'report' was never materialized") as exc:
        servo.load_value("report", home=home)
    assert f"servo materialize +report --home {home}" in str(exc.value)
    assert not home.exists()  # reading does not create a home
    servo.materialize([version, report], home=home)
    with pytest.raises(ValueNotFoundError, match="did you mean 'report'"):
        servo.load_value("reprt", home=home)
    with pytest.raises(ValueNotFoundError, match="--tenant acme"):
        servo.load_value("report", home=home, tenant="acme")  # tenants are separate


def test_an_unknown_run_and_an_asset_outside_the_run_are_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = servo.materialize([version, report], "version", home=home)
    with pytest.raises(ValueNotFoundError, match=r"no run 'nope' in the Servo home .*runs list"):
        servo.load_value("version", home=home, run_id="nope")
    with pytest.raises(ValueNotFoundError, match=f"run {run.run_id} did not run asset 'report'"):
        servo.load_value("report", home=home, run_id=run.run_id)


def test_an_asset_that_never_succeeded_names_its_last_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = servo.materialize([version, fragile], home=home)
    assert run.status("fragile") == "failed"
    with pytest.raises(ValueNotFoundError, match="'fragile' never succeeded") as exc:
        servo.load_value(fragile, home=home)
    assert f"it failed in run {run.run_id}: RuntimeError: version" in str(exc.value)
    with pytest.raises(ValueNotFoundError, match=f"no value in run {run.run_id}: it failed"):
        servo.load_value(fragile, home=home, run_id=run.run_id)


def test_an_idempotency_key_in_a_home_resumes_the_finished_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = servo.materialize([version, report], home=home, idempotency_key="nightly")
    again = servo.materialize([version, report], home=home, idempotency_key="nightly")
    assert again.resumed and again.run_id == first.run_id
    assert again.value("report") == first.value("report")
