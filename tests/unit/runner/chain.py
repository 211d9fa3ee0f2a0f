"""A three-asset chain a -> b -> c (values 1, 2, 3) shared by the runner tests."""

from __future__ import annotations

from servo import Definitions, asset


@asset
def a() -> int:
    return 1


@asset
def b(a: int) -> int:
    return a + 1


@asset
def c(b: int) -> int:
    return b + 1


DEFS = Definitions(assets=[a, b, c])
