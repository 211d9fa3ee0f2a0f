"""Where `servo emulate gcp` keeps fake-gcs-server's objects."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from servo.testing import emulator
from servo.testing.emulator import gcs_root


def test_objects_go_to_memory_backed_files_when_there_is_room(tmp_path: Path) -> None:
    shm, work = tmp_path / "shm", tmp_path / "work"
    shm.mkdir()
    root = gcs_root(work, shm=shm)
    assert root.parent == shm and root.is_dir()
    assert root.name.startswith("servo-emulate-gcs-")


def test_objects_stay_with_the_emulator_without_room_or_without_shm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    assert gcs_root(work, shm=tmp_path / "absent") == work / "gcs"
    shm = tmp_path / "shm"
    shm.mkdir()
    real = shutil.disk_usage

    def small(path: Any) -> Any:
        usage = real(path)
        return usage._replace(free=emulator.SHM_MIN_FREE_BYTES - 1)

    monkeypatch.setattr(emulator.shutil, "disk_usage", small)
    assert gcs_root(work, shm=shm) == work / "gcs"
    assert list(shm.iterdir()) == []
