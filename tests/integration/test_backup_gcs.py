"""Backup and restore through a GCS prefix (fake-gcs-server): a home copied to the
bucket and restored from it equals its ledger, at the generation the backup chose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servo.engine.manifest import ManifestStore
from servo.engine.replay import replay_and_compare
from servo.maintenance.backup import backup, restore
from servo.storage.gcs import GcsObjectStore
from servo.storage.local import LocalObjectStore
from servo.testing.lifecycles import TENANT, WORKSPACE
from tests.unit.maintenance.test_backup import publish_runs, rebuild

pytestmark = pytest.mark.integration


def test_backup_to_a_bucket_prefix_and_restore_from_it(
    tmp_path: Path, gcs_client: Any, gcs_bucket: str
) -> None:
    home = LocalObjectStore(tmp_path / "home", fsync=False)
    publish_runs(home, 0, 3)
    bucket = GcsObjectStore(gcs_bucket, prefix="backups/one", client=gcs_client)
    report = backup(home, bucket, f"gs://{gcs_bucket}/backups/one")
    generation = ManifestStore(home, TENANT, WORKSPACE).latest_generation()
    assert report.generations == {(TENANT, WORKSPACE): generation}
    assert ManifestStore(bucket, TENANT, WORKSPACE).latest_generation() == generation

    target_home = tmp_path / "restored"
    target = LocalObjectStore(target_home, fsync=False)
    restore(bucket, target, "gs", str(target_home), rebuild=rebuild(target_home, target))
    compared = replay_and_compare(target, TENANT, WORKSPACE)
    assert compared.equal
    assert sorted(r.run_id for r in compared.replay.state.rows("runs")) == ["r0", "r1", "r2"]
    assert target.get("outputs/a/__all__/r2.json").data == b"1"
