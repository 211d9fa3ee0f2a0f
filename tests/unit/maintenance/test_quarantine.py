"""Quarantine moves objects aside with their bytes; it never deletes one."""

from __future__ import annotations

from pathlib import Path

from servo.maintenance.quarantine import QUARANTINE, Quarantine, new_stamp
from servo.storage.memory import MemoryObjectStore


def test_move_keeps_the_bytes_under_quarantine() -> None:
    store = MemoryObjectStore()
    store.put_if_absent("ledger/t/w/batches/X.json", b"{broken")
    quarantine = Quarantine(store, stamp="S")
    moved = quarantine.move("ledger/t/w/batches/X.json", "ledger", ("r1",))
    assert moved is not None and moved.moved_to == "quarantine/S/ledger/t/w/batches/X.json"
    assert store.get(moved.moved_to).data == b"{broken"
    assert store.head("ledger/t/w/batches/X.json") is None
    assert quarantine.move("ledger/t/w/batches/X.json", "ledger") is None  # already gone
    assert quarantine.moved == [moved]


def test_move_file_outside_the_store(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").write_bytes(b"junk")
    quarantine = Quarantine(MemoryObjectStore())
    moved = quarantine.move_file(tmp_path, "catalog.db", "catalog")
    assert moved is not None
    assert (tmp_path / moved.moved_to).read_bytes() == b"junk"
    assert moved.moved_to.startswith(f"{QUARANTINE}/{quarantine.stamp}/")
    assert quarantine.move_file(tmp_path, "catalog.db-wal", "catalog") is None


def test_stamps_sort_by_time() -> None:
    first, second = new_stamp(), new_stamp()
    assert first <= second and first.endswith("Z") and len(first) == len("20261203T104512123456Z")
