"""Asset selection expressions (dbt-like), resolved against an `AssetGraph`.

Syntax, one or more selectors separated by commas and/or spaces (their union):

=============  ===============================================================
``name``       the asset itself
``+name``      the asset and everything upstream of it
``name+``      the asset and everything downstream of it
``2+name``     the asset and its upstream to a depth of 2 edges (any depth >= 1)
``name+3``     the asset and its downstream to a depth of 3 edges
``+name+``     the asset, all its upstream and all its downstream (depths allowed)
``*``          every asset
=============  ===============================================================

``select(graph, "+sales_report, raw_orders+1")`` returns the selected names in
topological order. An unknown asset raises `SelectionError` naming it, with the
closest existing name as a suggestion; a selector that does not parse raises too.
"""

from __future__ import annotations

import re

from servo.errors import SelectionError
from servo.graph._graph import AssetGraph

_SELECTOR = re.compile(r"(?:(\d*)(\+))?([A-Za-z_][A-Za-z0-9_]*)(?:(\+)(\d*))?")
_SEPARATORS = re.compile(r"[\s,]+")
_FORMS = "name, +name, name+, 2+name, name+3, +name+ or *"


def _depth(digits: str, selector: str) -> int | None:
    if not digits:
        return None
    depth = int(digits)
    if depth < 1:
        raise SelectionError(f"selector {selector!r}: a depth must be >= 1")
    return depth


def selectors(expression: str) -> list[str]:
    """The selectors of `expression` (split at commas and spaces), in order."""
    return [s for s in _SEPARATORS.split(expression.strip()) if s]


def select(graph: AssetGraph, expression: str) -> tuple[str, ...]:
    """The assets `expression` selects, in topological order.

    Raises:
        SelectionError: the expression is empty or does not parse, or names an
            unknown asset.
    """
    parts = selectors(expression)
    if not parts:
        raise SelectionError(f"empty selection; use {_FORMS}")
    chosen: set[int] = set()
    for selector in parts:
        if selector == "*":
            return graph.names
        match = _SELECTOR.fullmatch(selector)
        if match is None:
            raise SelectionError(f"cannot parse selector {selector!r}; use {_FORMS}")
        up_digits, up, name, down, down_digits = match.groups()
        node = graph.node_id(name)
        chosen.add(node)
        if up:
            chosen.update(graph.upstream_ids(node, _depth(up_digits, selector)))
        if down:
            chosen.update(graph.downstream_ids(node, _depth(down_digits or "", selector)))
    return graph.names_of(sorted(chosen))
