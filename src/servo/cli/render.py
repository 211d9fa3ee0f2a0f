"""Command output: JSON payloads (stable, for scripts) and rich tables (for people).

Times in JSON are ISO 8601 UTC strings with microseconds (`iso_time`); where a
payload carried integer epoch microseconds before, `time_fields` keeps the exact
value next to it (``requested_at`` and ``requested_at_us``). Tables fit the terminal
(80 columns included): asset names fold onto a second line rather than being cut,
free text wraps, and short labels (owner, tags) are cut with an ellipsis.
"""

from __future__ import annotations

import datetime as dt
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


def iso_time(us: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 UTC (``2026-12-03T10:20:30.123456Z``); None stays None."""
    if us is None:
        return None
    seconds, micros = divmod(us, 1_000_000)
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_fields(name: str, us: int | None) -> dict[str, Any]:
    """``{name: ISO time, name_us: the exact microseconds}`` for a JSON payload."""
    return {name: iso_time(us), f"{name}_us": us}


def note(message: str) -> None:
    """One line for people on stderr (where a result came from), never on stdout."""
    sys.stderr.write(message + "\n")


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
    table.add_column("Level", justify="right", no_wrap=True)
    table.add_column("Assets", overflow="fold")
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
    table = Table()
    table.add_column("Upstream", overflow="fold")
    table.add_column("Downstream", overflow="fold")
    table.add_column("Type", no_wrap=True)
    for edge in payload["edges"]:
        table.add_row(edge["upstream"], edge["downstream"], edge["type"])
    console.print(table)


def print_assets(definitions: Mapping[str, AssetDefinition]) -> None:
    """A table of assets with their dependencies and metadata, fitted to the terminal.

    Names and dependencies get up to a quarter of the width each (longer ones fold
    onto more lines), owner and tags share a column cut with an ellipsis past 16
    characters, and the description wraps in what is left.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rows = []
    for definition in definitions.values():
        deps = "\n".join(
            d.name if d.type == "data" else f"{d.name} ({d.type})" for d in definition.dependencies
        )
        labels = [definition.owner or "", *(f"{k}={v}" for k, v in definition.tags.items())]
        rows.append((definition.name, deps, "\n".join(labels).strip("\n")))
    console = Console()
    quarter = max(12, console.width // 4)

    def width(column: int, cap: int, header: str) -> int:
        longest = max((len(line) for row in rows for line in row[column].splitlines()), default=0)
        return max(len(header), min(longest, cap))

    widths = (
        width(0, quarter, "Asset"),
        width(1, quarter, "Depends on"),
        width(2, 16, "Owner, tags"),
    )
    gaps = 3 * len(widths)  # padding, divider, padding between each two columns
    table = Table(
        title=f"{len(definitions)} assets", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    table.add_column("Asset", overflow="fold", width=widths[0])
    table.add_column("Depends on", overflow="fold", width=widths[1])
    table.add_column("Owner, tags", no_wrap=True, width=widths[2])
    table.add_column("Description", width=max(12, console.width - sum(widths) - gaps))
    for row, definition in zip(rows, definitions.values(), strict=True):
        table.add_row(*row, definition.description or "")
    console.print(table)
