"""Numbered ledger batches: the numbers in use are exactly 1..N whoever writes, and
recovery finds every unfolded batch by probing, with no clock and no listing."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servo.engine.compactor import Compactor
from servo.engine.ledger import (
    LedgerReader,
    LedgerWriter,
    batch_path,
    batch_seq,
    first_absent_seq,
    ledger_prefix,
)
from servo.engine.recovery import unfolded_batches
from servo.errors import TransientStorageError
from servo.storage.local import LocalObjectStore
from servo.storage.memory import MemoryObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE, lifecycle
from tests.compaction import compact_paths

PREFIX = ledger_prefix(TENANT, WORKSPACE)


def numbers(store: MemoryObjectStore | LocalObjectStore) -> list[int]:
    found = (batch_seq(p) for p in store.list_prefix(PREFIX + "batches/"))
    return sorted(n for n in found if n is not None)


def test_batch_paths_round_trip_and_other_names_are_not_numbered() -> None:
    assert batch_seq(batch_path(PREFIX, 42)) == 42
    assert batch_seq(PREFIX + "batches/01M8Y0QEGP6SXQ3ZNYPVTCE74H.json") is None
    assert batch_seq(PREFIX + "runs/r1/requested") is None


@given(st.integers(min_value=0, max_value=300))
@settings(max_examples=40, deadline=None)
def test_first_absent_is_found_from_any_known_prefix(count: int) -> None:
    store = MemoryObjectStore()
    for seq in range(1, count + 1):
        store.put_if_absent(batch_path(PREFIX, seq), b"{}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        for known in {0, count // 3, count}:
            assert first_absent_seq(store, PREFIX, known) == count + 1
            assert first_absent_seq(store, PREFIX, known, pool.map) == count + 1, "windowed"


def test_concurrent_writers_use_each_number_once_without_gaps() -> None:
    store = MemoryObjectStore()
    pool = ThreadPoolExecutor(max_workers=8)
    writers = [LedgerWriter(store, TENANT, WORKSPACE) for _ in range(2)]
    writers += [LedgerWriter(store, TENANT, WORKSPACE, probe=pool.map) for _ in range(2)]
    written: list[str] = []
    lock = threading.Lock()

    def write(writer: LedgerWriter, index: int) -> None:
        for i in range(25):
            path = writer.append(lifecycle(f"r{index}-{i}", 1)[:1])
            with lock:
                written.append(path)

    threads = [threading.Thread(target=write, args=(w, i)) for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert numbers(store) == list(range(1, 101))
    assert sorted(written) == sorted(batch_path(PREFIX, n) for n in range(1, 101))


def _append_many(root: str, tag: str) -> None:
    writer = LedgerWriter(LocalObjectStore(Path(root), fsync=False), TENANT, WORKSPACE)
    for i in range(15):
        writer.append(lifecycle(f"{tag}-{i}", 1)[:1])


def test_writers_in_separate_processes_use_each_number_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_append_many, args=(str(tmp_path), f"p{i}")) for i in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    store = LocalObjectStore(tmp_path, fsync=False)
    assert numbers(store) == list(range(1, 31))
    runs = {e.run_id for p in store.list_prefix(PREFIX + "batches/")
            for e in LedgerReader(store).read(p)}  # fmt: skip
    assert len(runs) == 30


def test_recovery_probes_from_the_manifest_and_skips_acknowledged_batches() -> None:
    store = MemoryObjectStore()
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    paths = [writer.append(lifecycle(f"r{i}", 1)) for i in range(6)]
    compactor = Compactor(store, TENANT, WORKSPACE)
    compact_paths(compactor, store, paths[:3])
    assert compactor.manifest is not None and compactor.manifest.ledger_through == 3
    assert unfolded_batches(store, PREFIX, 3) == paths[3:]
    compactor.fold(LedgerReader(store).read(paths[4]), paths=[paths[4]])
    assert compactor.unfolded_paths() == [paths[3], paths[5]]
    compactor.fold(LedgerReader(store).read_many(compactor.unfolded_paths()),
                   paths=[paths[3], paths[5]])  # fmt: skip
    published = compactor.publish().manifest
    assert published.ledger_through == 6 and compactor.unfolded_paths() == []


def test_a_gap_in_acknowledgements_holds_the_manifest_back_until_filled() -> None:
    store = MemoryObjectStore()
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    paths = [writer.append(lifecycle(f"r{i}", 1)) for i in range(3)]
    compactor = Compactor(store, TENANT, WORKSPACE)
    compact_paths(compactor, store, [paths[0], paths[2]])
    assert compactor.manifest is not None and compactor.manifest.ledger_through == 1
    restarted = Compactor(store, TENANT, WORKSPACE)
    assert restarted.unfolded_paths() == paths[1:]  # batch 3 is read again: harmless
    compact_paths(restarted, store, restarted.unfolded_paths())
    assert restarted.manifest is not None and restarted.manifest.ledger_through == 3


def test_a_quarantined_batch_keeps_its_number(tmp_path: Path) -> None:
    from servo.maintenance.quarantine import Quarantine

    store = LocalObjectStore(tmp_path, fsync=False)
    writer = LedgerWriter(store, TENANT, WORKSPACE)
    paths = [writer.append(lifecycle(f"r{i}", 1)) for i in range(3)]
    Quarantine(store).move(paths[1], "ledger")
    assert LedgerReader(store).read(paths[1]) == []
    assert unfolded_batches(store, PREFIX, 0) == paths
    assert LedgerWriter(store, TENANT, WORKSPACE).append(lifecycle("r9", 1)) == batch_path(
        PREFIX, 4
    )


class FlakyHeads(MemoryObjectStore):
    """`head` fails transiently the first `failures` times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def head(self, path: str) -> int | None:  # type: ignore[override]
        if self.failures > 0:
            self.failures -= 1
            raise TransientStorageError(f"injected: head {path}")
        return super().head(path)


def test_finding_the_next_number_retries_transient_errors_like_a_write() -> None:
    store = FlakyHeads(failures=2)
    writer = LedgerWriter(store, TENANT, WORKSPACE, sleep=lambda _: None)
    assert writer.append(lifecycle("r1", 1)) == batch_path(PREFIX, 1)
    store.failures = 3  # more than a write tolerates: the error reaches the caller
    with pytest.raises(TransientStorageError):
        LedgerWriter(store, TENANT, WORKSPACE, sleep=lambda _: None).append(lifecycle("r2", 1))
