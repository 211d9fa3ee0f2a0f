"""The catalog's background thread: coalesces, flushes on close, never stops a run."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from servo import Definitions, asset
from servo.catalog import open_catalog
from servo.config.settings import Settings
from servo.embedded.catalog_sync import CatalogSync
from servo.embedded.session import RunRequest, run_assets
from servo.errors import CatalogCorruptError
from servo.observability import metrics


@dataclass
class Snap:
    """Stands for a published snapshot: only its generation matters here."""

    generation: int


class FakeCatalog:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Gate:
    """A projector that holds its first projection until released."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.seen: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, snapshot: Any) -> None:
        self.entered.set()
        self.release.wait(10)
        self.seen.append(snapshot.generation)
        if snapshot.generation == self.fail_on:
            raise RuntimeError("projection broke")


def test_snapshots_published_meanwhile_are_coalesced_to_the_newest() -> None:
    catalog, gate = FakeCatalog(), Gate()
    sync = CatalogSync(lambda: catalog, lambda _c: gate).start()  # type: ignore[arg-type,return-value]
    sync(Snap(1))  # type: ignore[arg-type]
    assert gate.entered.wait(10)
    for generation in (2, 3, 5, 4):  # while 1 is projected; 4 arrives late, 5 stays
        sync(Snap(generation))  # type: ignore[arg-type]
    gate.release.set()
    assert sync.close(10)
    assert gate.seen == [1, 5] and sync.projected == 2
    assert catalog.closed


def test_a_failed_projection_is_logged_counted_and_the_next_one_runs() -> None:
    catalog, gate = FakeCatalog(), Gate(fail_on=1)
    gate.release.set()
    before = metrics.sample("servo_catalog_projection_errors_total", {"error_type": "RuntimeError"})
    sync = CatalogSync(lambda: catalog, lambda _c: gate).start()  # type: ignore[arg-type,return-value]
    with capture_logs() as logs:
        sync(Snap(1))  # type: ignore[arg-type]
        while not gate.seen:
            threading.Event().wait(0.01)
        sync(Snap(2))  # type: ignore[arg-type]
        assert sync.close(10)
    assert gate.seen == [1, 2] and sync.projected == 1
    (failed,) = [e for e in logs if e["event"] == "catalog.projection_failed"]
    assert failed["log_level"] == "error" and failed["generation"] == 1
    after = metrics.sample("servo_catalog_projection_errors_total", {"error_type": "RuntimeError"})
    assert after == before + 1


def test_a_catalog_that_fails_to_open_is_logged_and_counted() -> None:
    def broken() -> None:
        raise CatalogCorruptError("the catalog x is damaged")

    labels = {"error_type": "CatalogCorruptError"}
    before = metrics.sample("servo_runs_without_catalog_total", labels)
    with capture_logs() as logs:
        sync = CatalogSync(broken, lambda _c: Gate()).start()  # type: ignore[arg-type,return-value]
        sync(Snap(1))  # type: ignore[arg-type]
        assert sync.close(10)
    (failed,) = [e for e in logs if e["event"] == "catalog.background_failed"]
    assert "damaged" in failed["error"] and failed["recovery"]
    assert metrics.sample("servo_runs_without_catalog_total", labels) == before + 1


def test_close_waits_a_bounded_time_then_says_the_catalog_is_behind() -> None:
    gate = Gate()
    sync = CatalogSync(FakeCatalog, lambda _c: gate).start()  # type: ignore[arg-type,return-value]
    sync(Snap(1))  # type: ignore[arg-type]
    assert gate.entered.wait(10)
    before = metrics.sample("servo_catalog_projection_unfinished_total")
    with capture_logs() as logs:
        assert sync.close(0.05) is False
    assert [e["event"] for e in logs] == ["catalog.projection_unfinished"]
    assert metrics.sample("servo_catalog_projection_unfinished_total") == before + 1
    gate.release.set()


@asset
def one() -> int:
    return 1


@asset
def two(one: int) -> int:
    return one + 1


def test_the_catalog_is_current_when_a_run_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servo.catalog.projector import CatalogProjector

    project = CatalogProjector.project

    def slow(self: CatalogProjector, snapshot: Any) -> bool:
        time.sleep(0.2)  # a projection still running when the run ends is waited for
        return project(self, snapshot)

    monkeypatch.setattr(CatalogProjector, "project", slow)
    settings = Settings(home=tmp_path / "home")
    outcome = run_assets(Definitions(assets=[one, two]), RunRequest(), settings)
    with open_catalog(settings) as catalog:
        (execution,) = catalog.executions.list("default").items
        assert execution.execution_id == outcome.run.run_id
        assert execution.status == "SUCCEEDED" and execution.n_succeeded == 2
        assert {a.name for a in catalog.assets.list("default").items} == {"one", "two"}
        assert len(catalog.materializations.list("default").items) == 2


def test_a_home_catalog_that_is_not_sqlite_stops_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.db").write_bytes(b"not a database" * 20)
    with pytest.raises(CatalogCorruptError, match="servo doctor"):
        run_assets(Definitions(assets=[one, two]), RunRequest(), Settings(home=home))
    assert not (home / "ledger").exists()
