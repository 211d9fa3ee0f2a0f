"""Recovery finds every unfolded ledger batch whatever the clocks say, and a ledger
write that failed is never published or acted on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from servo import Definitions, asset
from servo.engine import schema as s
from servo.engine.ids import now_us
from servo.engine.ledger import LedgerReader
from servo.engine.replay import compare, replay_ledger
from servo.engine.snapshot import SnapshotReader
from servo.errors import LedgerWriteError, StorageError
from servo.runner import EmbeddedRunner
from servo.storage.base import ObjectStore
from servo.storage.local import LocalObjectStore
from servo.storage.memory import MemoryObjectStore

from .chain import DEFS

HOUR_US = 3_600_000_000


def never_publish(runner: EmbeddedRunner) -> None:
    """The runner writes every event to the ledger and publishes nothing: a kill -9
    after the run's last ledger write and before its publish."""
    runner.compactor.publish = lambda **_: None  # type: ignore[method-assign,assignment,return-value]


def abandon(runner: EmbeddedRunner) -> None:
    """Drop a runner the way a killed process does: the pool stops, nothing else."""
    runner.pool.close(0.0)


def assert_published_equals_ledger(store: ObjectStore) -> None:
    with EmbeddedRunner(store, DEFS) as reader:
        assert reader.state is not None  # recovers and publishes what the manifest lacks
        snapshot = reader.compactor.snapshot()
    replay = replay_ledger(store, "default", "default")
    assert not replay.unreadable
    assert [d for d in compare(snapshot, replay.state) if d.differs] == []


@pytest.mark.parametrize("skew_us", [HOUR_US, -HOUR_US, 10 * 24 * HOUR_US])
def test_recovery_folds_every_committed_batch_whatever_the_clock(
    tmp_path: Path, skew_us: int
) -> None:
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    skewed: Callable[[], int] = lambda: now_us() + skew_us  # noqa: E731
    with EmbeddedRunner(store, DEFS, clock=skewed) as first:
        assert first.wait(first.start_run().run_id).status == s.RUN_SUCCEEDED

    second = EmbeddedRunner(store, DEFS)  # the clock is right again
    never_publish(second)
    run_id = second.start_run().run_id
    assert second.wait(run_id).status == s.RUN_SUCCEEDED  # in the ledger, not published
    abandon(second)
    assert SnapshotReader(store, "default", "default").load().run(run_id) is None

    with EmbeddedRunner(store, DEFS) as third:  # recovers the run (and archives it)
        record = third.run_record(run_id)
        assert record is not None and record[0].status == s.RUN_SUCCEEDED
        assert {t.status for t in record[1]} == {s.SUCCEEDED}
    assert_published_equals_ledger(store)


class FullDisk:
    """A store whose disk fills up: ledger batch writes fail once `full` is set."""

    def __init__(self, inner: ObjectStore, fail_after: int) -> None:
        self._inner = inner
        self.batch_writes = 0
        self.fail_after = fail_after
        self.full = True

    def put_if_absent(self, path: str, data: bytes) -> int:
        if "/batches/" in path or "/seq/" in path:
            self.batch_writes += 1
            if self.full and self.batch_writes > self.fail_after:
                raise StorageError(f"cannot write {path}: [Errno 28] No space left on device")
        return self._inner.put_if_absent(path, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.mark.parametrize("fail_after", [0, 1, 2, 3])
def test_a_failed_ledger_write_is_never_published_and_the_run_resumes(fail_after: int) -> None:
    store = FullDisk(MemoryObjectStore(), fail_after)
    runner = EmbeddedRunner(store, DEFS)  # type: ignore[arg-type]
    run_id = runner.start_run().run_id
    with pytest.raises(LedgerWriteError, match="No space left on device"):
        runner.wait(run_id)
    runner.close()  # publishes only what is durable
    assert_published_equals_ledger(store)  # type: ignore[arg-type]
    published = replay_ledger(store, "default", "default").state  # type: ignore[arg-type]
    assert published.run(run_id) is not None

    store.full = False  # space is freed
    with EmbeddedRunner(store, DEFS) as resumed:  # type: ignore[arg-type]
        assert resumed.wait(run_id).status == s.RUN_SUCCEEDED
    assert_published_equals_ledger(store)  # type: ignore[arg-type]
    requested = LedgerReader(store).read(f"ledger/default/default/runs/{run_id}/requested")  # type: ignore[arg-type]
    assert requested


def test_nothing_is_enqueued_for_events_that_could_not_be_written() -> None:
    store = FullDisk(MemoryObjectStore(), fail_after=0)
    ran: list[str] = []

    @asset
    def only() -> int:
        ran.append("only")
        return 1

    runner = EmbeddedRunner(store, Definitions(assets=[only]))  # type: ignore[arg-type]
    run_id = runner.start_run().run_id
    with pytest.raises(LedgerWriteError):
        runner.wait(run_id)
    runner.close()
    assert ran == [], "an attempt was started although its dispatch was never written"
    with pytest.raises(LedgerWriteError):  # still full: refuses again, cleanly
        EmbeddedRunner(store, Definitions(assets=[only])).wait(run_id)  # type: ignore[arg-type]
