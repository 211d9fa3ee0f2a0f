"""The reconciler's catalog projection never fails a step (`servo.serve.catalog_listener`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servo import Definitions, asset
from servo.config.settings import load_settings
from servo.observability import metrics
from servo.serve.catalog_listener import RETRY_S, CatalogListener
from servo.storage.memory import MemoryObjectStore


@asset
def only() -> int:
    return 1


def _settings(folder: Path) -> Any:
    environ = {"SERVO_HOME": str(folder), "SERVO_DATABASE_URL": "postgresql://nowhere/db"}
    return load_settings(None, environ=environ)


class _Snapshot:
    generation = 1


def test_a_catalog_that_cannot_be_opened_is_logged_counted_and_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    tries: list[str] = []

    def refuse(*args: Any) -> Any:
        from servo.errors import CatalogSchemaError

        tries.append(args[1])
        raise CatalogSchemaError("the catalog is at no revision; run 'servo catalog migrate'")

    monkeypatch.setattr("servo.embedded.session.start_catalog_sync", refuse)
    now = [100.0]
    listener = CatalogListener(settings, "t", "w", Definitions(assets=[only]),
                               MemoryObjectStore(), monotonic=lambda: now[0])  # fmt: skip
    labels = {"error_type": "CatalogSchemaError"}
    before = metrics.sample("servo_runs_without_catalog_total", labels)
    listener(_Snapshot())  # type: ignore[arg-type]
    listener(_Snapshot())  # type: ignore[arg-type]
    assert tries == ["t"], "not tried again at once"
    now[0] += RETRY_S
    listener(_Snapshot())  # type: ignore[arg-type]
    assert tries == ["t", "t"]
    assert metrics.sample("servo_runs_without_catalog_total", labels) == before + 2
    listener.close()


def test_snapshots_reach_the_sync_once_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)

    class Sync:
        def __init__(self) -> None:
            self.seen: list[object] = []
            self.closed = False

        def __call__(self, snapshot: object) -> None:
            self.seen.append(snapshot)

        def close(self) -> None:
            self.closed = True

    started: list[Sync] = []
    monkeypatch.setattr(
        "servo.embedded.session.start_catalog_sync",
        lambda *args: started.append(Sync()) or started[-1],
    )
    listener = CatalogListener(settings, "t", "w", Definitions(assets=[only]), MemoryObjectStore())
    snapshots = [_Snapshot(), _Snapshot()]
    for snapshot in snapshots:
        listener(snapshot)  # type: ignore[arg-type]
    listener.close()
    (sync,) = started
    assert sync.seen == snapshots and sync.closed
