"""Page arguments and opaque keyset cursors.

A cursor is the sort key of the last row of a page (e.g. ``(requested_at, id)``),
JSON-encoded then base64url'd: opaque to callers, checked when decoded. Lists
accept either an ``offset`` or a ``cursor``, never both.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from servo.catalog.records import Page

T = TypeVar("T")

#: The most rows one page may hold.
MAX_LIMIT: Final = 1000


def check_page(limit: int, offset: int, cursor: str | None) -> None:
    """Raise `ValueError` for a limit outside 1..MAX_LIMIT, a negative offset, or both
    an offset and a cursor."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an int between 1 and {MAX_LIMIT}, not {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, not {offset!r}")
    if offset and cursor is not None:
        raise ValueError("pass either an offset or a cursor, not both")


def encode_cursor(key: Sequence[int | str]) -> str:
    """An opaque cursor for the sort key `key`."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> tuple[Any, ...]:
    """The sort key in `cursor`, checked against the expected column `types`.

    Raises:
        ValueError: the cursor was not made by `encode_cursor` for this list.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    valid = (
        isinstance(key, list)
        and len(key) == len(types)
        and all(type(v) is t for v, t in zip(key, types, strict=True))
    )
    if not valid:
        raise ValueError(f"invalid cursor {cursor!r} for this list")
    return tuple(key)


def to_page(
    rows: Sequence[Any],
    limit: int,
    sort_key: Callable[[Any], Sequence[int | str]],
    convert: Callable[[Any], T],
) -> Page[T]:
    """A page from up to ``limit + 1`` fetched rows (one more tells there is a next)."""
    items = rows[:limit]
    more = len(rows) > limit
    next_cursor = encode_cursor(sort_key(items[-1])) if more and items else None
    return Page(tuple(convert(r) for r in items), next_cursor)
