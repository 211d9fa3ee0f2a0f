"""The runner's freshness watermark is the time up to which every report is folded."""

from __future__ import annotations

from pathlib import Path

from servo import Definitions, asset
from servo.engine.runner import EmbeddedRunner, _Events
from servo.storage.local import LocalObjectStore


@asset
def one() -> int:
    return 1


def test_a_partial_drain_of_a_backlog_does_not_advance_the_watermark(tmp_path: Path) -> None:
    now = [1_000_000]
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    with EmbeddedRunner(store, Definitions(assets=[one]), clock=lambda: now[0]) as runner:
        runner._drain()
        assert runner._drained_at == 1_000_000  # nothing queued: fresh up to now
        for _ in range(200):  # a backlog of reports, all put before t = 2 s
            runner._reports.put(_Events([], written=True))
        now[0] = 2_000_000
        runner._drain()  # takes at most a batch of them
        assert runner._drained_at == 1_000_000, "reports put before now are still queued"
        runner._drain()
        assert runner._reports.empty() and runner._drained_at == 2_000_000
