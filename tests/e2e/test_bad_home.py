"""A home that cannot be used gives one ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ._cli import COMMAND, QUICKSTART, run
from ._homes import break_home, copy_home, materialized, one_error

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("base") / "home"
    return home, materialized(home, 1)[0]


def commands(home: Path, run_id: str) -> list[tuple[str, ...]]:
    """Every command that opens the home."""
    where = ("--home", str(home))
    return [
        ("materialize", "--defs", str(QUICKSTART), *where),
        ("runs", "list", *where),
        ("runs", "show", run_id, *where),
        ("assets", *where),
        ("lineage", "sales_report", *where),
    ]


def test_a_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    for args in commands(home, "r1"):
        line = one_error(run(*args))
        assert str(home) in line and "not a directory" in line
        assert "--home" in line


def test_a_home_whose_parent_is_missing(tmp_path: Path) -> None:
    home = tmp_path / "missing" / "parent" / "home"
    for args in commands(home, "r1"):
        line = one_error(run(*args))
        assert str(home.parent) in line and "mkdir -p" in line
    assert not (tmp_path / "missing").exists()  # nothing was created on the way


def _as_unprivileged(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """`servo args` without the power to ignore file modes (root has it, even read-only)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "root runs this test through setpriv (util-linux)"
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    return subprocess.run(
        [*prefix, *COMMAND, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_read_only_home(base: tuple[Path, str], tmp_path: Path) -> None:
    home = copy_home(base[0], tmp_path / "home")
    paths = [home, *home.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        for args in commands(home, base[1]):
            line = one_error(_as_unprivileged(args))
            assert str(home) in line and "read-only" in line
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | 0o200)


def test_a_damaged_catalog_for_every_command(base: tuple[Path, str], tmp_path: Path) -> None:
    home = copy_home(base[0], tmp_path / "home")
    catalog = break_home(home, "catalog")
    for args in commands(home, base[1]):
        line = one_error(run(*args))
        assert str(catalog) in line and "servo doctor" in line and "--repair" in line


def test_a_damaged_projection_file_without_a_catalog(
    base: tuple[Path, str], tmp_path: Path
) -> None:
    """Without a catalog, `runs` reads the projections; with damage, it says so.

    (A reading command never writes: `servo materialize` sets torn files aside, see
    test_torn_home, and a torn newest manifest is passed over for the one before.)
    """
    home = copy_home(base[0], tmp_path / "home")
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (home / name).unlink(missing_ok=True)
    broken = break_home(home, "parquet")
    line = one_error(run("runs", "list", "--home", str(home)))
    assert str(broken) in line and "servo doctor --repair" in line
    assert broken.exists()
