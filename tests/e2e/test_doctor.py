"""`servo doctor [--repair]` on healthy and damaged homes, through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._cli import QUICKSTART, run
from ._homes import break_home, copy_home, materialized, one_error

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A home with two succeeded runs of the quickstart."""
    home = tmp_path_factory.mktemp("base") / "home"
    return home, materialized(home, 2)


def runs_listed(home: Path) -> dict[str, str]:
    result = run("runs", "list", "--home", str(home), "--json")
    assert result.returncode == 0, result.stderr
    return {r["run_id"]: r["status"] for r in json.loads(result.stdout)["runs"]}


def test_a_healthy_home(base: tuple[Path, list[str]]) -> None:
    home, made = base
    text = run("doctor", "--home", str(home))
    assert text.returncode == 0, text.stderr
    assert "healthy" in text.stdout
    result = run("doctor", "--home", str(home), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["findings"] == []
    assert report["runs"] == len(made)
    assert report["scopes"] == [{"tenant": "default", "workspace": "default"}]


def test_a_missing_home_is_reported_not_created(tmp_path: Path) -> None:
    home = tmp_path / "no" / "such" / "home"
    result = run("doctor", "--home", str(home), "--json")
    assert result.returncode == 1
    [finding] = json.loads(result.stdout)["findings"]
    assert finding["kind"] == "home_unusable"
    assert not (tmp_path / "no").exists()


def test_a_home_that_was_never_created_is_not_called_healthy(tmp_path: Path) -> None:
    home = tmp_path / "typo"
    for args in (("--json",), ("--repair", "--json")):
        result = run("doctor", "--home", str(home), *args)
        assert result.returncode == 1, result.stderr
        [finding] = json.loads(result.stdout)["findings"]
        assert finding["kind"] == "home_missing" and "--home" in finding["message"]
    text = run("doctor", "--home", str(home))
    assert "no Servo home" in text.stdout and "--repair" not in text.stdout
    assert not home.exists()


@pytest.mark.parametrize(
    ("kind", "finding"),
    [
        ("ledger", "ledger_unreadable"),
        ("manifest", "manifest_unreadable"),
        ("parquet", "projection_unreadable"),
        ("catalog", "catalog_damaged"),
    ],
)
def test_break_repair_and_lose_nothing(
    base: tuple[Path, list[str]], tmp_path: Path, kind: str, finding: str
) -> None:
    """Each kind of damage: found by doctor, repaired without loss."""
    home = copy_home(base[0], tmp_path / "home")
    first, second = base[1]
    broken = break_home(home, kind)
    damaged_bytes = broken.read_bytes()

    if kind == "catalog":  # torn engine files are set aside by materialize itself
        line = one_error(run("materialize", "--defs", str(QUICKSTART), "--home", str(home)))
        assert str(broken) in line
        assert "servo doctor" in line and "--repair" in line

    checked = run("doctor", "--home", str(home), "--json")
    assert checked.returncode == 1, checked.stderr
    kinds = {f["kind"]: f for f in json.loads(checked.stdout)["findings"]}
    assert finding in kinds
    assert kinds[finding]["path"] is not None

    register = ("--defs", str(QUICKSTART)) if kind == "catalog" else ()
    repaired = run("doctor", "--repair", "--home", str(home), *register, "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["after"]["healthy"] is True
    moved = {q["path"]: q for q in report["repair"]["quarantined"]}
    relative = str(broken.relative_to(home))
    assert relative in moved  # moved aside, never deleted: same bytes in quarantine/
    assert (home / moved[relative]["moved_to"]).read_bytes() == damaged_bytes
    assert moved[relative]["moved_to"].startswith("quarantine/")
    # Gone, or (a manifest's generation, the catalog) written afresh by the rebuild.
    assert not broken.exists() or broken.read_bytes() != damaged_bytes

    listed = runs_listed(home)
    if kind == "ledger":
        # The truncated batch belonged to the second run: the first is intact, and
        # the repair names the run whose events it may have held.
        assert listed[first] == "succeeded"
        assert second in listed
        assert second in report["repair"]["runs_touched"]
    else:
        assert listed == {first: "succeeded", second: "succeeded"}

    if kind == "catalog":  # the rebuilt catalog has the definitions registered again
        assets = run("assets", "--home", str(home), "--json")
        assert len(json.loads(assets.stdout)["assets"]) == 5, assets.stderr
    again = run("materialize", "--defs", str(QUICKSTART), "--home", str(home), "--json")
    assert again.returncode == 0, again.stderr
    assert run("doctor", "--home", str(home)).returncode == 0


def test_repair_of_a_healthy_home_changes_nothing(
    base: tuple[Path, list[str]], tmp_path: Path
) -> None:
    home = copy_home(base[0], tmp_path / "home")
    before = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    result = run("doctor", "--repair", "--home", str(home))
    assert result.returncode == 0, result.stderr
    after = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert [p for p in after if not p.startswith("catalog.db")] == [
        p for p in before if not p.startswith("catalog.db")
    ]
    assert not (home / "quarantine").exists()
