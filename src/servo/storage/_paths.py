"""Object path rules shared by the durable backends.

A path is a '/'-separated key such as ``ledger/2024/01HX.json``. So that switching
backend is configuration only, the local and GCS stores accept the same paths:

- not empty, not starting or ending with '/', no empty segment (``a//b``);
- no ``.`` or ``..`` segment (they would alias or escape the root on disk);
- no segment starting with ``.tmp-`` (reserved for the local store's temporary files);
- no NUL, CR or LF character.

Prefixes given to ``list_prefix`` follow the same rules except that they may be
empty and may end with '/' (or with a partial segment: prefixes are literal).
"""

from __future__ import annotations

from servo.errors import StorageError

#: Name prefix of the local store's temporary files; never part of an object path.
TEMP_PREFIX = ".tmp-"

_FORBIDDEN_CHARS = ("\x00", "\r", "\n")


def check_path(path: str) -> None:
    """Raise `StorageError` when `path` is not a valid object path.

    Args:
        path: the object path to check.

    Raises:
        StorageError: the message names the path and the rule it breaks.
    """
    if not path:
        raise StorageError("invalid object path '': a path cannot be empty")
    if path[0] == "/" or path[-1] == "/":
        raise StorageError(f"invalid object path {path!r}: a path cannot start or end with '/'")
    _check_segments(path, path.split("/"))


def check_prefix(prefix: str) -> None:
    """Raise `StorageError` when `prefix` cannot be listed.

    Args:
        prefix: a literal path prefix; empty lists everything.

    Raises:
        StorageError: the message names the prefix and the rule it breaks.
    """
    if not prefix:
        return
    if prefix[0] == "/":
        raise StorageError(f"invalid prefix {prefix!r}: a prefix cannot start with '/'")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()
    _check_segments(prefix, segments)


def _check_segments(path: str, segments: list[str]) -> None:
    for segment in segments:
        if not segment:
            raise StorageError(f"invalid object path {path!r}: empty segment ('//')")
        if segment in (".", ".."):
            raise StorageError(f"invalid object path {path!r}: '{segment}' segment")
        if segment.startswith(TEMP_PREFIX):
            raise StorageError(
                f"invalid object path {path!r}: segments starting with "
                f"{TEMP_PREFIX!r} are reserved for temporary files"
            )
    for char in _FORBIDDEN_CHARS:
        if char in path:
            raise StorageError(f"invalid object path {path!r}: contains {char!r}")
