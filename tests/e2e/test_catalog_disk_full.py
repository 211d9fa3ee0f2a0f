"""A full disk while the SQLite catalog opens: the run goes on, reads stop with one line.

The disk is filled for real in the ``servo`` subprocess: ``RLIMIT_FSIZE`` caps the
size of every file it writes (SIGXFSZ ignored, so writes past the cap fail with
EFBIG, which SQLite reports as it reports a full disk). The cap is above what the
run itself writes (small values, projections and ledger batches) and above the
catalog's shared-memory index (32 KiB), but far below what creating the catalog's
tables writes to its WAL; a second cap below 32 KiB keeps an existing catalog from
opening at all.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from servo.catalog import open_catalog
from servo.config.settings import Settings

from ._cli import COMMAND, run, write
from ._homes import error_lines, one_error

pytestmark = pytest.mark.e2e

#: Enough for the run's own files, too little for the catalog's first migration.
RUN_FITS = 64 * 1024
#: Too little even for the catalog's shared-memory index: nothing opens it.
NOTHING_FITS = 24 * 1024

DEFS = """
from servo import asset


@asset
def numbers() -> list[int]:
    return [1, 2, 3]


@asset
def total(numbers: list[int]) -> int:
    return sum(numbers)
"""


def _capped(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run_full(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`servo args` on a disk that refuses to grow any file past `limit` bytes."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    return subprocess.run(
        [*COMMAND, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_capped(limit),
    )


def warnings_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "[warn" in line or "[error" in line]


@pytest.fixture(scope="module")
def full_then_freed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A home whose first run met a full disk, and whose second run had space again."""
    root = tmp_path_factory.mktemp("disk_full")
    defs, home = write(root / "definitions.py", DEFS), root / "home"
    full = run_full(RUN_FITS, "materialize", "--defs", str(defs), "--home", str(home), "--json")
    again = run("materialize", "--defs", str(defs), "--home", str(home), "--json")
    assert again.returncode == 0, again.stderr
    assert warnings_of(again) == []
    return home, full


def test_materialize_goes_on_without_the_catalog_and_it_catches_up(
    full_then_freed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, full = full_then_freed
    assert full.returncode == 0, full.stderr
    assert "Traceback" not in full.stderr and error_lines(full) == []
    assert json.loads(full.stdout)["status"] == "succeeded"
    (warning,) = warnings_of(full)  # one line says what happened and what to do
    assert "catalog" in warning and str(home / "catalog.db") in warning
    assert "free space" in warning
    # space was freed: the second run opened the catalog, which caught up on both runs
    with open_catalog(Settings(home=home)) as catalog:
        assert len(catalog.executions.list("default").items) == 2


def test_catalog_reads_stop_with_one_line_naming_the_file(
    full_then_freed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, _ = full_then_freed
    for command in (("assets", "--catalog"), ("lineage", "total", "--catalog")):
        line = one_error(run_full(NOTHING_FITS, *command, "--home", str(home)))
        assert str(home / "catalog.db") in line, command
        assert "free space" in line, command


def test_catalog_migrate_on_a_full_disk_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    line = one_error(run_full(RUN_FITS, "catalog", "migrate", "--home", str(home)))
    assert str(home / "catalog.db") in line and "free space" in line


def test_doctor_on_a_full_disk_says_so_and_repair_moves_nothing(
    full_then_freed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, _ = full_then_freed
    checked = run_full(NOTHING_FITS, "doctor", "--home", str(home), "--json")
    assert checked.returncode == 1, checked.stderr
    (finding,) = json.loads(checked.stdout)["findings"]
    assert finding["kind"] == "catalog_unwritable" and "free space" in finding["message"]
    repaired = run_full(NOTHING_FITS, "doctor", "--repair", "--home", str(home))
    assert "Traceback" not in repaired.stderr
    assert not (home / "quarantine").exists(), "a healthy catalog was moved aside"
    assert run("doctor", "--home", str(home)).returncode == 0  # space again: healthy
