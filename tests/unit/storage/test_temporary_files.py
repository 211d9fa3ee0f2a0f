"""Temporary files left by a killed write are collected, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from servo.storage import LocalObjectStore

HOUR_NS = 3600 * 10**9


def killed_writer(root: Path, path: str) -> None:
    """A process that writes the temporary file of `path` and dies before publishing it."""
    code = (
        "import os, sys\n"
        "from servo.storage import _files\n"
        "directory = sys.argv[1] + '/' + sys.argv[2].rpartition('/')[0]\n"
        "_files.write_temp(directory, sys.argv[2], b'half a batch', None, False)\n"
        "os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root), path], check=False, timeout=60)
    assert done.returncode == 9


def temporary_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".tmp-*") if p.is_file())


def test_a_killed_writers_temporary_file_is_collected(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, fsync=False)
    store.put_if_absent("ledger/t/w/batches/a.json", b"[]")
    killed_writer(tmp_path, "ledger/t/w/batches/b.json")
    [left] = temporary_files(tmp_path)

    removed = store.collect_temporary_files()

    assert removed == [str(left.relative_to(tmp_path))]
    assert temporary_files(tmp_path) == []
    assert list(store.list_prefix("")) == ["ledger/t/w/batches/a.json"]


def test_live_and_foreign_writers_keep_their_files_until_they_are_old(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, fsync=False)
    folder = tmp_path / "ledger"
    folder.mkdir()
    mine = folder / f".tmp-{os.getpid()}-{'0' * 16}-0"  # pid alive, token of no host here
    live = folder / f".tmp-{os.getpid()}-{_host_token()}-1"  # this process, writing
    foreign = folder / ".tmp-123-ffffffff00000000-0"  # another host: its pids mean nothing here
    odd = folder / ".tmp-whatever"
    for path in (mine, live, foreign, odd):
        path.write_bytes(b"x")

    assert store.collect_temporary_files() == []

    old = time.time_ns() - 2 * HOUR_NS
    for path in (foreign, odd):
        os.utime(path, ns=(old, old))
    removed = store.collect_temporary_files(prefix="ledger/")
    assert sorted(removed) == ["ledger/.tmp-123-ffffffff00000000-0", "ledger/.tmp-whatever"]
    assert sorted(temporary_files(tmp_path)) == sorted([mine, live])
    assert store.collect_temporary_files(prefix="nothing-here/") == []


def _host_token() -> str:
    from servo.storage import _files

    return _files.TOKEN
