"""The suite's last-resort PostgreSQL: a throwaway cluster from the installed binaries.

The whole suite can be forced onto this path with ``SERVO_TEST_PG_FORCE_THROWAWAY=1``;
this test proves it works on every run where the binaries are installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servo.catalog import ExecutionSpec, migrate_catalog, open_catalog
from servo.catalog.migrate import HEAD_REVISION
from servo.config.settings import DatabaseSettings, Settings
from tests.integration.pg_server import NoServer, answers, start_throwaway

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_throwaway_cluster_starts_serves_the_catalog_and_goes_away(tmp_path: Path) -> None:
    try:
        cluster = start_throwaway()
    except NoServer as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the throwaway cluster must start in CI, but: {exc}", pytrace=False)
        pytest.skip(f"cannot start a throwaway cluster here: {exc}")
    try:
        settings = Settings(home=tmp_path, database=DatabaseSettings(url=cluster.url))
        assert migrate_catalog(settings) == (None, HEAD_REVISION)
        with open_catalog(settings) as catalog:
            created, _ = catalog.executions.create("acme", ExecutionSpec("run-1"))
            assert catalog.executions.get("acme", "run-1") == created
            assert catalog.executions.get("globex", "run-1") is None
    finally:
        cluster.stop()
    assert not answers(cluster.url, timeout=1)
    assert not cluster.root.exists()
