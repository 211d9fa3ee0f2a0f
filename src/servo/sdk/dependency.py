"""Asset dependencies: the `AssetDep` edge declaration and its three types.

A dependency says that one asset must be materialized before another and, for
``data`` dependencies, that the upstream value is handed to the downstream function:

- ``data``: order execution AND pass the upstream value as a keyword argument
  (when the function has a parameter of that name, or takes ``**kwargs``);
- ``metadata``: order execution; the downstream reads only metadata of the upstream
  (its location, row count, ...), never its value;
- ``control``: order execution only.
"""

from __future__ import annotations

from dataclasses import dataclass

from servo.errors import DefinitionError
from servo.graph.lineage import DEP_TYPES, DepType

__all__ = ["DEP_TYPES", "AssetDep", "DepType"]


@dataclass(frozen=True, slots=True)
class AssetDep:
    """A declared dependency on another asset.

    Attributes:
        name: the upstream asset's name.
        type: ``data`` (value passed to the function), ``metadata`` or ``control``
            (ordering only).
    """

    name: str
    type: DepType = "data"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise DefinitionError(f"AssetDep name must be a str, not {type(self.name).__name__}")
        if self.type not in DEP_TYPES:
            allowed = ", ".join(repr(t) for t in DEP_TYPES)
            raise DefinitionError(
                f"dependency {self.name!r}: type must be one of {allowed}, not {self.type!r}"
            )
