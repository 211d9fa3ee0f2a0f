"""The asset graph: planning (toposort, cycles, levels), lineage and selection.

`AssetGraph` is built from ``(name, [(dependency, type), ...])`` pairs and is always
a validated DAG; `select` resolves dbt-like selection expressions against it.
"""

from __future__ import annotations

from servo.graph._graph import AssetGraph
from servo.graph.lineage import DEP_TYPES, DepType, Edge, Lineage
from servo.graph.planner import ExecutionPlan
from servo.graph.selection import select

__all__ = ["DEP_TYPES", "AssetGraph", "DepType", "Edge", "ExecutionPlan", "Lineage", "select"]
