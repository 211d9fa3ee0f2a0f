"""Command output: JSON payloads (stable, for scripts) and rich tables (for people)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Literal

from servo.graph import ExecutionPlan, Lineage
from servo.sdk.asset import AssetDefinition

Direction = Literal["upstream", "downstream", "both"]


def write_json(payload: Mapping[str, Any]) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def direction_of(upstream: bool, downstream: bool) -> Direction:
    """The lineage direction the ``--upstream`` / ``--downstream`` flags ask for."""
    if upstream and downstream:
        import typer

        raise typer.BadParameter(
            "--upstream and --downstream exclude each other; give neither for both"
        )
    return "upstream" if upstream else "downstream" if downstream else "both"


def plan_payload(plan: ExecutionPlan) -> dict[str, Any]:
    """``{"assets": N, "levels": [[...], ...]}``."""
    return {"assets": len(plan.order), "levels": [list(level) for level in plan.levels]}


def lineage_assets(lineage: Lineage, direction: Direction) -> list[str]:
    """The lineage's assets for `direction`, in topological order."""
    if direction == "upstream":
        return list(lineage.upstream)
    if direction == "downstream":
        return list(lineage.downstream)
    return [*lineage.upstream, *lineage.downstream]


def lineage_payload(lineage: Lineage, direction: Direction) -> dict[str, Any]:
    """``{"asset", "direction", "depth", "assets", "edges"}``; edges as dicts."""
    members = {lineage.asset, *lineage_assets(lineage, direction)}
    edges = [
        {"upstream": e.upstream, "downstream": e.downstream, "type": e.type}
        for e in lineage.edges
        if e.upstream in members and e.downstream in members
    ]
    return {
        "asset": lineage.asset,
        "direction": direction,
        "depth": lineage.depth,
        "assets": lineage_assets(lineage, direction),
        "edges": edges,
    }


def asset_payload(definition: AssetDefinition) -> dict[str, Any]:
    """One asset for ``servo assets --json``."""
    return {
        "name": definition.name,
        "dependencies": [{"name": d.name, "type": d.type} for d in definition.dependencies],
        "description": definition.description,
        "owner": definition.owner,
        "tags": dict(definition.tags),
        "asset_type": definition.asset_type,
        "timeout": definition.timeout,
    }


def print_plan(plan: ExecutionPlan) -> None:
    """A table of levels."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Execution plan: {len(plan.order)} assets in {len(plan.levels)} levels")
    table.add_column("Level", justify="right")
    table.add_column("Assets")
    for number, level in enumerate(plan.levels):
        table.add_row(str(number), ", ".join(level))
    Console().print(table)


def print_lineage(lineage: Lineage, direction: Direction) -> None:
    """The assets found and the typed edges among them."""
    from rich.console import Console
    from rich.table import Table

    payload = lineage_payload(lineage, direction)
    depth = "unlimited" if lineage.depth is None else str(lineage.depth)
    console = Console()
    console.print(f"Lineage of [bold]{lineage.asset}[/bold] ({direction}, depth {depth})")
    if direction in ("upstream", "both"):
        console.print(f"upstream ({len(lineage.upstream)}): " + ", ".join(lineage.upstream))
    if direction in ("downstream", "both"):
        console.print(f"downstream ({len(lineage.downstream)}): " + ", ".join(lineage.downstream))
    table = Table("Upstream", "Downstream", "Type")
    for edge in payload["edges"]:
        table.add_row(edge["upstream"], edge["downstream"], edge["type"])
    console.print(table)


def print_assets(definitions: Mapping[str, AssetDefinition]) -> None:
    """A table of assets with their dependencies and metadata."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(definitions)} assets")
    table.add_column("Asset", no_wrap=True)
    table.add_column("Depends on", no_wrap=True)
    table.add_column("Owner")
    table.add_column("Tags")
    table.add_column("Description", ratio=1)
    for definition in definitions.values():
        deps = "\n".join(
            d.name if d.type == "data" else f"{d.name} ({d.type})" for d in definition.dependencies
        )
        tags = "\n".join(f"{k}={v}" for k, v in definition.tags.items())
        table.add_row(
            definition.name, deps, definition.owner or "", tags, definition.description or ""
        )
    Console().print(table)
