"""A PostgreSQL server for the tests: the one configured, the local one, or a throwaway.

Resolution (ARCHITECTURE.md, "Test infrastructure that is real"):

1. ``SERVO_TEST_DATABASE_URL`` if set (a superuser, or a role with CREATEDB and
   CREATEROLE: the tests create databases and the ``servo_app`` role);
2. else ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers (trust auth);
3. else a throwaway cluster started here: ``initdb`` + ``pg_ctl`` from
   ``/usr/lib/postgresql/*/bin`` (or ``$PATH``), trust auth, fsync off, on a free
   port of 127.0.0.1, in a temporary folder, stopped and deleted at the end. Run as
   root, the binaries run as the ``postgres`` OS user (``initdb`` refuses root).

``SERVO_TEST_PG_FORCE_THROWAWAY=1`` skips 1 and 2 (to prove the fallback works).
When nothing works the caller fails (in CI, ``CI=true``) or skips (elsewhere).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class NoServer(RuntimeError):
    """No PostgreSQL server could be found or started; the message says why."""


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a server at `url` accepts a connection."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout))) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _binaries() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder; `stop` deletes it."""

    bin_dir: Path
    root: Path
    port: int = 0
    _as_user: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._as_user, *command], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise NoServer(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def start(self) -> ThrowawayCluster:
        data = self.root / "data"
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise NoServer("running as root and there is no 'postgres' OS user") from exc
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--no-instructions",
        )  # fmt: skip
        for _attempt in range(3):  # the free port may be taken before the server binds it
            self.port = _free_port()
            options = f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-l", str(self.root / "log"), "-w", "-t", "30", "start",
                )  # fmt: skip
            except NoServer:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if answers(self.url, timeout=1):
                    return self
                time.sleep(0.05)
        log = (
            (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
        )
        raise NoServer(f"the throwaway cluster did not start:\n{log}")

    def stop(self) -> None:
        try:
            self._run(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                "-w", "stop",
            )  # fmt: skip
        except NoServer:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_throwaway() -> ThrowawayCluster:
    """Start a throwaway cluster from the installed binaries.

    Raises:
        NoServer: no binaries, or the cluster did not start.
    """
    bin_dir = _binaries()
    if bin_dir is None:
        raise NoServer("no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH")
    root = Path(tempfile.mkdtemp(prefix="servo-pg-"))
    cluster = ThrowawayCluster(bin_dir, root)
    try:
        return cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def find_server() -> tuple[str, ThrowawayCluster | None]:
    """A superuser URL of a server for the tests, and the cluster to stop (or None).

    Raises:
        NoServer: nothing configured, nothing local, and no cluster could start.
    """
    forced = os.environ.get("SERVO_TEST_PG_FORCE_THROWAWAY") == "1"
    configured = os.environ.get("SERVO_TEST_DATABASE_URL")
    if configured and not forced:
        if not answers(configured):
            raise NoServer(f"SERVO_TEST_DATABASE_URL={configured} does not answer")
        return configured, None
    if not forced and answers(LOCAL_URL):
        return LOCAL_URL, None
    cluster = start_throwaway()
    return cluster.url, cluster
