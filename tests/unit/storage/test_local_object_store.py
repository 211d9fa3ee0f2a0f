"""Behaviour specific to `LocalObjectStore`: files on disk, path rules, processes."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from servo.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
)
from servo.storage import LocalObjectStore, ObjectStore
from tests.unit.storage import race_worker

INVALID_PATHS = [
    "",
    "/abs/path",
    "trailing/",
    "a//b",
    "a/../b",
    "..",
    "./a",
    "a/.",
    ".tmp-123-abc-0",
    "dir/.tmp-x/y",
    "nul\x00byte",
    "new\nline",
]


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "root", fsync=False)


def test_is_an_object_store(store: LocalObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_objects_are_plain_files_under_root(store: LocalObjectStore, tmp_path: Path) -> None:
    generation = store.put_if_absent("ledger/2024/e1.json", b"{}")
    on_disk = tmp_path / "root" / "ledger" / "2024" / "e1.json"
    assert on_disk.read_bytes() == b"{}"
    assert on_disk.stat().st_mtime_ns == generation
    assert store.root == tmp_path / "root"
    assert sorted(os.listdir(on_disk.parent)) == ["e1.json"]  # no temporary file left


def test_root_is_created_lazily(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "a" / "b", fsync=True)
    assert not (tmp_path / "a").exists()
    assert store.head("x") is None
    assert list(store.list_prefix("")) == []
    store.put_if_absent("x/y/z", b"1")
    assert (tmp_path / "a" / "b" / "x" / "y" / "z").read_bytes() == b"1"


def test_relative_root_is_fixed_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalObjectStore(Path(".servo"), fsync=False)
    monkeypatch.chdir("/")
    store.put_if_absent("k", b"v")
    assert (tmp_path / ".servo" / "k").read_bytes() == b"v"


@pytest.mark.parametrize("path", INVALID_PATHS)
def test_invalid_paths_are_rejected_by_every_operation(store: LocalObjectStore, path: str) -> None:
    operations = [
        lambda: store.put_if_absent(path, b"x"),
        lambda: store.put_if_generation(path, b"x", 1),
        lambda: store.get(path),
        lambda: store.head(path),
        lambda: store.delete(path),
    ]
    for operation in operations:
        with pytest.raises(StorageError, match="invalid object path") as info:
            operation()
        assert type(info.value) is StorageError


@pytest.mark.parametrize("prefix", ["/a", "a//", "../", "a/../b", ".tmp-"])
def test_invalid_prefixes_are_rejected(store: LocalObjectStore, prefix: str) -> None:
    with pytest.raises(StorageError, match="invalid"):
        store.list_prefix(prefix)


def test_listing_skips_temporary_files(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_if_absent("d/real", b"1")
    (tmp_path / "root" / "d" / ".tmp-999-deadbeef-1").write_bytes(b"partial")
    (tmp_path / "root" / ".tmp-999-deadbeef-2").write_bytes(b"partial")
    assert list(store.list_prefix("")) == ["d/real"]
    assert list(store.list_prefix("d/")) == ["d/real"]


def test_object_and_directory_of_the_same_name(store: LocalObjectStore) -> None:
    store.put_if_absent("a/b", b"1")
    with pytest.raises(StorageError, match="a/b/c") as info:
        store.put_if_absent("a/b/c", b"2")
    assert type(info.value) is StorageError
    with pytest.raises(StorageError, match="directory") as info:
        store.put_if_absent("a", b"3")
    assert type(info.value) is StorageError
    assert store.head("a") is None
    with pytest.raises(ObjectNotFoundError):
        store.get("a")
    with pytest.raises(PreconditionFailedError):
        store.put_if_generation("a", b"x", 1)
    store.delete("a")  # a directory is no object: nothing happens
    assert store.get("a/b").data == b"1"


def test_fsync_makes_file_and_directory_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    LocalObjectStore(tmp_path, fsync=False).put_if_absent("x", b"1")
    assert synced == []
    store = LocalObjectStore(tmp_path, fsync=True)
    store.put_if_absent("new/dir/x", b"1")
    assert len(synced) >= 4  # file, directory, and the two new directories' parents
    synced.clear()
    generation = store.put_if_absent("y", b"1")
    assert len(synced) == 2
    synced.clear()
    store.put_if_generation("y", b"2", generation)
    assert len(synced) == 2


def test_generations_never_repeat_under_inode_reuse(store: LocalObjectStore) -> None:
    generations = [store.put_if_absent("hint", b"0")]
    for i in range(200):
        generations.append(store.put_if_generation("hint", str(i).encode(), generations[-1]))
    assert generations == sorted(set(generations))  # strictly increasing
    for stale in generations[:-1:20]:
        with pytest.raises(PreconditionFailedError):
            store.put_if_generation("hint", b"stale", stale)


def test_generation_is_greater_than_a_future_timestamp(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    generation = store.put_if_absent("clock", b"0")
    future = generation + 10**15  # as if written by a host whose clock runs ahead
    os.utime(tmp_path / "root" / "clock", ns=(future, future))
    assert store.head("clock") == future
    assert store.put_if_generation("clock", b"1", future) == future + 1


def test_processes_race_on_put_if_absent_and_put_if_generation(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root, fsync=False)
    create = [(f"created/{i}", None) for i in range(20)]
    swap = [(f"swapped/{i}", store.put_if_absent(f"swapped/{i}", b"base")) for i in range(20)]
    tasks = create + swap
    workers = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = [tmp_path / f"result-{i}.json" for i in range(workers)]
    processes = [
        ctx.Process(
            target=race_worker.race,
            args=(str(root), tasks, f"process-{i}", barrier, str(results[i])),
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    outcomes = [json.loads(r.read_text(encoding="utf-8")) for r in results]
    for index, (path, _) in enumerate(tasks):
        won = [w for w in range(workers) if outcomes[w][index] is not None]
        assert len(won) == 1, f"{path}: winners {won}"
        found = store.get(path)
        assert found.data == f"process-{won[0]}".encode()
        assert found.generation == outcomes[won[0]][index]


def test_put_if_absent_leaves_no_temporary_file_on_conflict(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    store.put_if_absent("x", b"1")
    with pytest.raises(ObjectExistsError):
        store.put_if_absent("x", b"2")
    assert os.listdir(tmp_path / "root") == ["x"]
