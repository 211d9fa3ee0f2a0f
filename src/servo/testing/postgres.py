"""A real PostgreSQL server for tests and `servo emulate gcp`: configured, local or throwaway.

`find_server` resolves, in order (ARCHITECTURE.md, "Test infrastructure that is real"):

1. ``SERVO_TEST_DATABASE_URL`` if set (a superuser, or a role with CREATEDB and
   CREATEROLE: the tests create databases and the ``servo_app`` role);
2. else ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers (trust auth);
3. else a throwaway cluster (`start_throwaway`): ``initdb`` + ``pg_ctl`` from
   ``/usr/lib/postgresql/*/bin`` (or ``$PATH``), trust auth, fsync off, on a free
   port of 127.0.0.1, in a temporary folder, stopped and deleted by
   `ThrowawayCluster.stop`. Run as root, the binaries run as the ``postgres`` OS
   user (``initdb`` refuses root).

``SERVO_TEST_PG_FORCE_THROWAWAY=1`` skips 1 and 2 (to prove the fallback works).
When nothing works, `NoServer` says why; the caller decides whether that fails (in CI)
or skips. `create_database` makes one database on such a server and returns its URL.

``psycopg`` (the ``postgres`` extra) is imported when a server is contacted, not when
this module is imported.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servo.testing.ports import free_port

__all__ = [
    "LOCAL_URL",
    "NoServer",
    "PostgresServerError",
    "ThrowawayCluster",
    "answers",
    "create_database",
    "find_server",
    "start_throwaway",
]

#: The local server tried when nothing is configured.
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

_PORT_ATTEMPTS = 3
_START_TIMEOUT = 15.0
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresServerError(RuntimeError):
    """A PostgreSQL server for tests cannot be used; the message says why."""


class NoServer(PostgresServerError):
    """No PostgreSQL server could be found or started; the message says why."""


def _psycopg_url(url: str) -> str:
    """`url` without a SQLAlchemy driver suffix (``postgresql+psycopg`` -> ``postgresql``)."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{separator}{rest}" if separator else url


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a server at `url` accepts a connection within about `timeout` seconds."""
    import psycopg

    try:
        with psycopg.connect(_psycopg_url(url), connect_timeout=max(1, round(timeout))) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _binaries() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder; `stop` deletes it.

    Attributes:
        bin_dir: the folder holding ``initdb`` and ``pg_ctl``.
        root: the temporary folder (data directory, socket, log).
        port: the port on 127.0.0.1 once started (0 before).
    """

    bin_dir: Path
    root: Path
    port: int = 0
    _as_user: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The superuser URL (``postgres``, trust auth) of the cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def _data(self) -> Path:
        return self.root / "data"

    def _run(self, command: list[str], timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._as_user, *command], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise NoServer(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def _drop_root(self) -> None:
        """Run the binaries as the ``postgres`` OS user when we are root."""
        if os.geteuid() != 0:
            return
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise NoServer("running as root and there is no 'postgres' OS user") from exc
        os.chown(self.root, account.pw_uid, account.pw_gid)
        self._as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> ThrowawayCluster:
        """Create and start the cluster; returns it.

        Raises:
            NoServer: ``initdb`` failed, or the server did not start (with its log).
        """
        self._drop_root()
        initdb = [str(self.bin_dir / "initdb"), "-D", str(self._data), "-U", "postgres"]
        initdb += ["-A", "trust", "--no-sync", "-E", "UTF8", "--no-instructions"]
        self._run(initdb)
        for _attempt in range(_PORT_ATTEMPTS):  # the port may be taken before it is bound
            self.port = free_port()
            options = f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self._data), "-o", options]
            pg_ctl += ["-l", str(self.root / "log"), "-w", "-t", "30", "start"]
            try:
                self._run(pg_ctl)
            except NoServer:
                continue
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline:
                if answers(self.url, timeout=1):
                    return self
                time.sleep(0.05)
        log_file = self.root / "log"
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        raise NoServer(f"the throwaway cluster did not start:\n{log}")

    def stop(self) -> None:
        """Stop the server (immediate shutdown) and delete its folder."""
        pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self._data), "-m", "immediate"]
        try:
            self._run([*pg_ctl, "-w", "stop"])
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
        cluster.stop()
        raise


def find_server(environ: Mapping[str, str] | None = None) -> tuple[str, ThrowawayCluster | None]:
    """A superuser URL of a server, and the throwaway cluster to stop (or None).

    Args:
        environ: where ``SERVO_TEST_DATABASE_URL`` and ``SERVO_TEST_PG_FORCE_THROWAWAY``
            are read (default: the process environment).

    Raises:
        NoServer: the configured server does not answer, or nothing is configured,
            nothing local answers and no cluster could start.
    """
    environ = os.environ if environ is None else environ
    forced = environ.get("SERVO_TEST_PG_FORCE_THROWAWAY") == "1"
    configured = environ.get("SERVO_TEST_DATABASE_URL")
    if configured and not forced:
        if not answers(configured):
            raise NoServer(f"SERVO_TEST_DATABASE_URL={configured} does not answer")
        return configured, None
    if not forced and answers(LOCAL_URL):
        return LOCAL_URL, None
    cluster = start_throwaway()
    return cluster.url, cluster


def create_database(url: str, name: str, *, exist_ok: bool = False) -> str:
    """Create database `name` on the server of `url` and return the new database's URL.

    Args:
        url: a URL of the server as a role allowed to create databases (its own
            database is only used to connect); a SQLAlchemy driver suffix is kept.
        name: the new database: lower-case letters, digits and ``_``, at most 63.
        exist_ok: return the URL when the database already exists instead of failing.

    Raises:
        ValueError: `name` is not such a name.
        PostgresServerError: the server refused or cannot be reached.
    """
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r}: use lower-case letters, digits and '_' (at most 63)"
        )
    import psycopg
    import sqlalchemy as sa
    from psycopg import sql

    try:
        with psycopg.connect(_psycopg_url(url), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            elif not exist_ok:
                raise PostgresServerError(f"database {name!r} already exists")
    except psycopg.errors.DuplicateDatabase as exc:
        if not exist_ok:
            raise PostgresServerError(f"database {name!r} already exists") from exc
    except psycopg.Error as exc:
        raise PostgresServerError(f"cannot create database {name!r}: {exc}") from exc
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)
