"""What an asset function's signature says about the values it receives."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servo.errors import DefinitionError

#: Reserved parameter name: the run context, never a dependency.
CONTEXT_PARAM = "context"


@dataclass(frozen=True, slots=True)
class FunctionSignature:
    """The keyword-passable parameters of an asset function.

    Attributes:
        required: parameters without a default, in declaration order (not ``context``).
        optional: parameters with a default, in declaration order (not ``context``).
        takes_context: the function declares a ``context`` parameter.
        takes_kwargs: the function declares ``**kwargs``.
    """

    required: tuple[str, ...]
    optional: tuple[str, ...]
    takes_context: bool
    takes_kwargs: bool

    def accepts(self, name: str) -> bool:
        """Whether a keyword argument `name` reaches a named parameter."""
        return name in self.required or name in self.optional


def inspect_function(fn: Callable[..., Any], owner: str) -> FunctionSignature:
    """Read `fn`'s signature; raise `DefinitionError` naming `owner` if unusable.

    Upstream values are passed by keyword, so a positional-only parameter without a
    default cannot receive one and is refused.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{owner}: cannot read the function's signature: {exc}") from exc
    required: list[str] = []
    optional: list[str] = []
    takes_context = takes_kwargs = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            takes_kwargs = True
            continue
        has_default = param.default is not param.empty
        if param.kind is param.POSITIONAL_ONLY:
            if not has_default:
                raise DefinitionError(
                    f"{owner}: parameter {param.name!r} is positional-only; upstream values "
                    "are passed by keyword, so remove the '/' or give it a default"
                )
            continue
        if param.name == CONTEXT_PARAM:
            takes_context = True
        elif has_default:
            optional.append(param.name)
        else:
            required.append(param.name)
    return FunctionSignature(tuple(required), tuple(optional), takes_context, takes_kwargs)


def first_doc_line(fn: Callable[..., Any]) -> str | None:
    """The first non-empty line of `fn`'s docstring, or None."""
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    for line in doc.splitlines():
        if line.strip():
            return line.strip()
    return None
