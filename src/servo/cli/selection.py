"""What ``servo materialize`` runs: selection arguments and ``--workflow``, checked up front.

- Several selection arguments are one selection, their union in topological order
  (``servo materialize a b+`` is ``servo materialize "a, b+"``; the runner records
  them joined with ", ").
- A selector that selects nothing but names a file of the working directory is
  most likely the shell's expansion of an unquoted ``*``: the error says to quote it
  or to omit the selection.
- ``--workflow NAME`` runs the workflow's assets (``Definitions.workflows``). With a
  selection too, it runs the INTERSECTION: the workflow's assets that the selection
  selects (``--workflow daily "+report"``: the part of ``daily`` that ``report``
  needs); an empty intersection is an error, so a typo never runs nothing
  silently. An unknown workflow is an error with the closest name as a suggestion.

The result is a plain selection expression for `EmbeddedRunner.start_run`, so the
runner does not need to know about workflows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from servo.errors import SelectionError
from servo.graph import AssetGraph, select
from servo.graph.selection import selectors
from servo.graph.suggest import did_you_mean
from servo.sdk.definitions import Definitions

#: What the glob hint tells the user to do instead.
GLOB_HINT = "quote '*' ('servo materialize \"*\"') or omit the selection to run every asset"


def _checked(graph: AssetGraph, expression: str, cwd: Path) -> tuple[str, ...]:
    """`select`, with the shell-glob hint when a failing selector is a file name here."""
    try:
        return select(graph, expression)
    except SelectionError as exc:
        for selector in selectors(expression):
            try:
                select(graph, selector)
            except SelectionError:
                if (cwd / selector).exists():
                    raise SelectionError(
                        f"{selector!r} is not an asset but a file in {cwd}: did the shell "
                        f"expand an unquoted '*'? {GLOB_HINT}"
                    ) from exc
        raise


def _workflow_assets(definitions: Definitions, name: str) -> tuple[str, ...]:
    found = definitions.workflows.get(name)
    if found is None:
        known = ", ".join(definitions.workflows) or "none"
        raise SelectionError(
            f"unknown workflow {name!r}{did_you_mean(name, definitions.workflows)} "
            f"(workflows: {known})"
        )
    return found.asset_names


def run_selection(
    definitions: Definitions,
    arguments: Sequence[str],
    workflow: str | None = None,
    cwd: Path | None = None,
) -> str | None:
    """The selection expression to run, or None for every asset.

    Args:
        definitions: the loaded definitions.
        arguments: the selection arguments as given (each may hold several selectors).
        workflow: ``--workflow``, or None.
        cwd: where to look for file names (default: the working directory).

    Raises:
        SelectionError: a selector does not parse or names no asset (with the glob
            hint when it is a file name), the workflow is unknown, or the workflow
            and the selection have no asset in common.
    """
    graph = definitions.graph
    expression = ", ".join(arguments) if arguments else None
    chosen = None if expression is None else _checked(graph, expression, cwd or Path.cwd())
    if workflow is None:
        return expression
    members = set(_workflow_assets(definitions, workflow))
    names = [n for n in (graph.names if chosen is None else chosen) if n in members]
    if not names:
        raise SelectionError(
            f"the selection {expression!r} selects none of the assets of workflow {workflow!r} "
            f"({', '.join(sorted(members))}); --workflow with a selection runs the assets "
            "in both"
        )
    return ", ".join(names)
