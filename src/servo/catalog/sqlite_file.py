"""The home's SQLite catalog file, checked before SQLAlchemy is imported.

``servo materialize`` opens the catalog in the background (`servo.embedded.catalog_sync`),
but a home that cannot be used or a file that is not a database must still stop the
command with one ``error:`` line before anything runs. These checks need only the
file system, so they run first, in the caller's thread, at no import cost;
`servo.catalog.catalog.open_catalog` runs them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from servo.errors import CatalogCorruptError, CatalogError
from servo.observability.logging import get_logger
from servo.storage.home import check_home

log = get_logger(__name__)

#: The SQLite catalog's file name under the Servo home.
SQLITE_FILE: Final = "catalog.db"
#: The first bytes of every SQLite database file.
SQLITE_HEADER: Final = b"SQLite format 3\x00"
#: SQLite's words for a file that is not (or no longer) a database.
_DAMAGE_MARKERS = ("file is not a database", "malformed", "not a database", "readonly database")


def home_catalog_path(home: Path | str) -> Path:
    """The SQLite catalog file of the Servo home `home`."""
    return Path(home) / SQLITE_FILE


def is_damaged(error: BaseException) -> bool:
    """Whether a catalog error says the SQLite file is damaged (or cannot be written)."""
    text = str(error).lower()
    return any(marker in text for marker in _DAMAGE_MARKERS)


def check_home_catalog(home: Path | str) -> None:
    """Refuse a home that cannot be written, or a catalog file that is not SQLite.

    A missing home passes (it is created with its parents, as the object store does;
    the CLI refuses a missing parent first); SQLite needs to write, even to read.

    Raises:
        HomeError: the home is not a writable directory.
        CatalogCorruptError: the catalog file is not a SQLite database (or unreadable).
    """
    if not Path(home).exists():
        return
    check_home(Path(home), write=True)
    check_sqlite_header(home_catalog_path(home), home)


def check_sqlite_header(path: Path, home: Path | str | None) -> None:
    """Refuse a catalog file that is not SQLite at all, before the driver complains.

    Args:
        path: the SQLite file.
        home: the Servo home holding it (named in the repair hint), or None when the
            file was configured by ``database.url``.
    """
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise damaged(str(path), home, CatalogError(str(exc))) from exc
    if header and header != SQLITE_HEADER:
        raise damaged(str(path), home, CatalogError("file is not a database"))


def damaged(path: str, home: Path | str | None, exc: CatalogError) -> CatalogCorruptError:
    """The error naming the damaged (or read-only) catalog `path`, and what to do."""
    log.info("catalog.damaged", path=path, error=str(exc))  # the CLI prints the error
    if "readonly" in str(exc).lower():
        return CatalogCorruptError(
            f"the catalog {path} is read-only ({exc}): make it writable (chmod u+w {path}) "
            "or pass another --home"
        )
    where = "" if home is None else f" --home {home}"
    return CatalogCorruptError(
        f"the catalog {path} is damaged ({exc}): run 'servo doctor{where} --repair' to "
        "move it aside and rebuild it from the ledger"
    )
