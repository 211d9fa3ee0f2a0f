"""`servo gc` through the real command: retention, pins, latest values, the record."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from servo.engine import events as ev
from servo.engine.compactor import Compactor
from servo.engine.ledger import LedgerWriter
from servo.errors import ValueRemovedError
from servo.sdk.io import read_value
from servo.storage.local import LocalObjectStore
from tests.compaction import compact_paths

from ._cli import QUICKSTART, run
from ._homes import copy_home, materialized

pytestmark = pytest.mark.e2e

ASSETS = ("raw_orders", "clean_orders", "revenue_by_region", "top_customers", "sales_report")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Runs A (all), B (all), C (sales_report alone: pins B's inputs), D (all)."""
    home = tmp_path_factory.mktemp("base") / "home"
    a, b = materialized(home, 2)
    (c,) = materialized(home, 0, "sales_report")
    (d,) = materialized(home, 1)
    return home, [a, b, c, d]


def values(home: Path) -> set[tuple[str, str]]:
    """(asset, run id) of every stored value."""
    return {(p.parent.parent.name, p.stem) for p in (home / "outputs").rglob("*") if p.is_file()}


def of_run(run_id: str, *assets: str) -> set[tuple[str, str]]:
    return {(asset, run_id) for asset in assets or ASSETS}


def gc(home: Path, *args: str) -> dict[str, Any]:
    result = run("gc", "--home", str(home), *args, "--json")
    assert result.returncode == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def test_dry_run_removes_nothing(base: tuple[Path, list[str]], tmp_path: Path) -> None:
    home = copy_home(base[0], tmp_path / "home")
    before = values(home)
    text = run("gc", "--home", str(home), "--keep-runs", "1", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "would remove" in text.stdout
    payload = gc(home, "--keep-runs", "1", "--dry-run")
    assert payload["removed"] and payload["record"] is None and payload["dry_run"] is True
    assert values(home) == before
    assert not (home / "gc").exists()


def test_keep_runs_keeps_pinned_and_latest_values(
    base: tuple[Path, list[str]], tmp_path: Path
) -> None:
    home = copy_home(base[0], tmp_path / "home")
    a, b, c, d = base[1]
    pinned = of_run(b, "revenue_by_region", "top_customers")  # C read them from B
    payload = gc(home, "--keep-runs", "2")  # keeps C and D
    assert values(home) == pinned | of_run(c, "sales_report") | of_run(d)
    assert payload["kept"]["pinned"] == 2
    assert set(payload["runs"]) == {a, b}

    # The record lists what went, with sizes and runs; reading a removed value says so.
    record = home / payload["record"]
    assert record.parent == home / "gc"
    document = json.loads(record.read_text())
    removed = {(r["asset_key"], r["run_id"]): r for r in document["removed"]}
    assert set(removed) == of_run(a) | of_run(b) - pinned
    assert all(r["size"] > 0 for r in removed.values())
    assert document["bytes"] == sum(r["size"] for r in removed.values())
    gone = removed[("sales_report", a)]
    with pytest.raises(ValueRemovedError, match=r"removed by 'servo gc'.*gc/"):
        read_value(LocalObjectStore(home, fsync=False), gone["path"], "json")

    # C outside the retention: its own value goes, the values it pins stay (retrying C
    # must still find them); D's values are the latest.
    gc(home, "--keep-runs", "1")
    assert values(home) == pinned | of_run(d)
    assert len(list((home / "gc").glob("*.json"))) == 2

    # The latest materialization of every asset is never removed.
    payload = gc(home, "--keep-runs", "0")
    assert values(home) == pinned | of_run(d)
    assert payload["kept"] == {"latest": len(ASSETS), "pinned": 2} and payload["record"] is None
    again = run("materialize", "sales_report", "--defs", str(QUICKSTART), "--home", str(home))
    assert again.returncode == 0, again.stderr


def test_older_than(base: tuple[Path, list[str]], tmp_path: Path) -> None:
    home = copy_home(base[0], tmp_path / "home")
    d = base[1][3]
    before = values(home)
    assert gc(home, "--older-than", "1")["removed"] == []  # every run is from today
    assert values(home) == before
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    payload = gc(home, "--older-than", "1", "--as-of", later)
    assert len(payload["runs"]) == 4
    assert values(home) == of_run(d) | of_run(base[1][1], "revenue_by_region", "top_customers")


def test_an_unfinished_run_keeps_its_values(base: tuple[Path, list[str]], tmp_path: Path) -> None:
    home = copy_home(base[0], tmp_path / "home")
    store = LocalObjectStore(home, fsync=False)
    request = ev.Event.new(
        ev.RunRequested(tasks=(ev.PlannedTask("raw_orders", "raw_orders"),)),
        tenant_id="default",
        workspace_id="default",
        run_id="01UNFINISHED0000000000000",
        emitted_at=1,  # the oldest run of all
    )
    compact_paths(
        Compactor(store, "default", "default"),
        store,
        [LedgerWriter(store, "default", "default").append([request])],
    )
    store.put_if_absent("outputs/raw_orders/__all__/01UNFINISHED0000000000000.json", b"[1]")
    payload = gc(home, "--keep-runs", "0")
    assert ("raw_orders", "01UNFINISHED0000000000000") in values(home)
    assert payload["kept"]["unfinished_run"] == 1


def test_gc_needs_a_retention(tmp_path: Path) -> None:
    result = run("gc", "--home", str(tmp_path))
    assert result.returncode == 2
    assert "--keep-runs" in result.stderr and "Traceback" not in result.stderr


def test_gc_removes_temporary_files_of_killed_writes(
    base: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A write killed before it published leaves `.tmp-*`; gc collects old ones."""
    home = copy_home(base[0], tmp_path / "home")
    stale = home / "outputs" / ".tmp-123-ffffffff00000000-0"  # another host's, old
    fresh = home / "outputs" / ".tmp-124-ffffffff00000000-0"  # maybe still writing
    for path in (stale, fresh):
        path.write_bytes(b"half a value")
    hours_ago = int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1e9)
    os.utime(stale, ns=(hours_ago, hours_ago))
    payload = gc(home, "--keep-runs", "100")
    assert payload["temporary_files"] == ["outputs/.tmp-123-ffffffff00000000-0"]
    assert not stale.exists() and fresh.exists()
