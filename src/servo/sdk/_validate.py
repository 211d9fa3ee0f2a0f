"""Checks shared by the decorators; every failure is a `DefinitionError` naming the owner."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from servo.errors import DefinitionError
from servo.resilience.retry import RetryPolicy

#: Asset and workflow names: an identifier of ASCII letters, digits and underscores.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NAME_RULE = (
    "a name starts with a letter or underscore, has only ASCII letters, digits and "
    "underscores, and is at most 128 characters"
)


def check_name(name: object, owner: str, what: str = "name") -> str:
    """Return `name` if it is a valid asset/workflow name, else raise naming `owner`.

    Args:
        name: the candidate name.
        owner: who is being defined, for the message (``asset 'x'``).
        what: what the name is, for the message (``name``, ``dependency name``).
    """
    if not isinstance(name, str):
        raise DefinitionError(f"{owner}: {what} must be a str, not {type(name).__name__}")
    if NAME_PATTERN.fullmatch(name) is None:
        raise DefinitionError(f"{owner}: invalid {what} {name!r}; {NAME_RULE}")
    return name


def optional_str(value: object, option: str, owner: str) -> str | None:
    """`value` if it is None or a str, else raise naming the option."""
    if value is not None and not isinstance(value, str):
        raise DefinitionError(f"{owner}: {option} must be a str, not {type(value).__name__}")
    return value


def tags(value: object, owner: str) -> Mapping[str, str]:
    """A copy of `value` as a dict of str to str, else raise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DefinitionError(
            f"{owner}: tags must be a dict of str to str, not {type(value).__name__}"
        )
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise DefinitionError(
                f"{owner}: tags must be a dict of str to str; got {key!r}: {item!r}"
            )
    return dict(value)


def timeout(value: object, owner: str) -> float | None:
    """`value` as float seconds (finite, > 0) or None, else raise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(
            f"{owner}: timeout must be a number of seconds, not {type(value).__name__}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DefinitionError(f"{owner}: timeout must be a number of seconds > 0, not {value!r}")
    return seconds


def retry(value: object, owner: str) -> RetryPolicy | None:
    """`value` if it is a `RetryPolicy` or None, else raise (``retry=3`` would
    otherwise be ignored and the asset tried once)."""
    if value is None or isinstance(value, RetryPolicy):
        return value
    example = (
        f"RetryPolicy(max_attempts={value})"
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1
        else "RetryPolicy(max_attempts=3)"
    )
    raise DefinitionError(
        f"{owner}: retry must be a RetryPolicy, not {type(value).__name__} {value!r}; "
        f"write retry={example} (from servo import RetryPolicy)"
    )


def partitions(value: Any, owner: str) -> None:
    """Partitions are reserved for Layer 2: only None is accepted."""
    if value is not None:
        raise DefinitionError(f"{owner}: partitions are not supported yet")
