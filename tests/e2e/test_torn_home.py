"""A torn file (a power loss with fsync off) does not stop `servo materialize`.

The unreadable object is moved to ``quarantine/``, one warning line names it and
where it went, the projections are rebuilt from the ledger where needed, and the
run goes on; ``servo doctor`` then finds the home healthy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ._cli import QUICKSTART, run
from ._homes import LEDGER, break_home, copy_home, materialized, newest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A home with two succeeded runs of the quickstart."""
    home = tmp_path_factory.mktemp("base") / "home"
    return home, materialized(home, 2)


def torn_unfolded_batch(home: Path) -> Path:
    """The batch a runner wrote after its last publish, torn by the power loss.

    (A torn batch the manifest had folded is not read at startup: doctor finds it.)
    """
    last = newest(home / LEDGER / "batches")
    following = last.with_name(f"{int(last.stem) + 1:0{len(last.stem)}d}.json")
    following.write_bytes(last.read_bytes()[:40])
    return following


def warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    assert "error:" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if "[warn" in line]


@pytest.mark.parametrize("kind", ["ledger", "manifest", "parquet"])
def test_materialize_goes_on_past_a_torn_file(
    base: tuple[Path, list[str]], tmp_path: Path, kind: str
) -> None:
    home = copy_home(base[0], tmp_path / "home")
    first = base[1][0]
    broken = torn_unfolded_batch(home) if kind == "ledger" else break_home(home, kind)
    torn = broken.read_bytes()

    result = run("materialize", "--defs", str(QUICKSTART), "--home", str(home), "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    [line] = warnings(result)  # one line: the file, and where it went
    assert str(broken) in line and str(home / "quarantine") in line, line
    [moved] = [p for p in (home / "quarantine").rglob("*") if p.is_file()]
    assert moved.read_bytes() == torn
    assert str(moved) in line
    if kind == "ledger":
        assert "never acknowledged" in line  # what was lost, and why that is allowed
    new_run = json.loads(result.stdout)["run_id"]
    listed = run("runs", "list", "--home", str(home), "--json")
    statuses = {r["run_id"]: r["status"] for r in json.loads(listed.stdout)["runs"]}
    assert statuses[first] == "succeeded" and statuses[new_run] == "succeeded"
    checked = run("doctor", "--home", str(home), "--json")
    assert checked.returncode == 0, checked.stdout
