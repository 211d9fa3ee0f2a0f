"""`Definitions`: the validated set of assets and workflows a project declares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from servo.errors import DefinitionError
from servo.graph import AssetGraph
from servo.sdk.asset import AssetDefinition, definition_of
from servo.sdk.workflow import WorkflowDefinition, workflow_of


def _where(definition: AssetDefinition) -> str:
    code = getattr(definition.fn, "__code__", None)
    location = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{definition.qualified_name}{location}"


class Definitions:
    """Every asset and workflow of a project, checked as a whole.

    Args:
        assets: ``@asset`` functions or `AssetDefinition` objects.
        workflows: ``@workflow`` functions or `WorkflowDefinition` objects; their
            assets are included too.
        source: where the definitions were loaded from (set by the loader), so a
            worker process can load the same definitions again.

    Raises:
        DefinitionError: an item is not an asset/workflow, two different assets (or
            workflows) share a name, or a dependency is not defined.
        CycleError: the dependencies form a cycle.
    """

    __slots__ = ("_assets", "_code_version", "_executors", "_graph", "_workflows", "source")

    def __init__(
        self,
        assets: Iterable[object] = (),
        workflows: Iterable[object] = (),
        *,
        source: str | None = None,
    ) -> None:
        workflow_defs: dict[str, WorkflowDefinition] = {}
        for item in workflows:
            found_workflow = workflow_of(item)
            if found_workflow is None:
                raise DefinitionError(
                    "Definitions(workflows=...) takes @workflow functions, "
                    f"not {type(item).__name__} {item!r}"
                )
            existing_workflow = workflow_defs.setdefault(found_workflow.name, found_workflow)
            if existing_workflow is not found_workflow:
                raise DefinitionError(f"workflow name {found_workflow.name!r} is defined twice")
        by_name: dict[str, AssetDefinition] = {}
        candidates: list[object] = list(assets)
        for wf in workflow_defs.values():
            candidates.extend(wf.assets)
        for item in candidates:
            definition = definition_of(item)
            if definition is None:
                raise DefinitionError(
                    f"Definitions(assets=...) takes @asset functions, not {type(item).__name__} "
                    f"{item!r}"
                )
            existing = by_name.setdefault(definition.name, definition)
            if existing is not definition:
                raise DefinitionError(
                    f"asset name {definition.name!r} is defined twice: "
                    f"{_where(existing)} and {_where(definition)}"
                )
        graph = AssetGraph(
            (d.name, [(dep.name, dep.type) for dep in d.dependencies]) for d in by_name.values()
        )
        self._graph = graph
        self._assets: Mapping[str, AssetDefinition] = MappingProxyType(
            {name: by_name[name] for name in graph.names}
        )
        self._workflows: Mapping[str, WorkflowDefinition] = MappingProxyType(workflow_defs)
        self._executors = _executors_by_asset(workflow_defs.values())
        self.source = source
        self._code_version: str | None = None

    @property
    def assets(self) -> Mapping[str, AssetDefinition]:
        """Asset name -> definition, in topological order."""
        return self._assets

    @property
    def workflows(self) -> Mapping[str, WorkflowDefinition]:
        """Workflow name -> definition, in declaration order."""
        return self._workflows

    def executor_of(self, asset_key: str) -> tuple[str, str] | None:
        """(workflow name, executor spec) that decides where `asset_key` runs; None
        when no workflow with an executor holds it (the configured default)."""
        return self._executors.get(asset_key)

    @property
    def code_version(self) -> str:
        """The version of the code that defines these assets (`servo.sdk.code_version`),
        computed once."""
        version = self._code_version
        if version is None:
            from servo.sdk.code_version import code_version

            version = self._code_version = code_version(
                (name, d.fn) for name, d in self._assets.items()
            )
        return version

    @property
    def graph(self) -> AssetGraph:
        """The validated asset graph."""
        return self._graph

    def __len__(self) -> int:
        return len(self._assets)

    def __repr__(self) -> str:
        source = f", source={self.source!r}" if self.source else ""
        return f"Definitions({len(self._assets)} assets, {len(self._workflows)} workflows{source})"


def _executors_by_asset(workflows: Iterable[WorkflowDefinition]) -> dict[str, tuple[str, str]]:
    """Asset -> (workflow, executor spec) over the workflows that name an executor.

    Raises:
        DefinitionError: an asset is in two workflows whose executors differ.
    """
    found: dict[str, tuple[str, str]] = {}
    for workflow in workflows:
        if workflow.executor is None:
            continue
        for asset in workflow.assets:
            other = found.setdefault(asset.name, (workflow.name, workflow.executor))
            if other[1] != workflow.executor:
                raise DefinitionError(
                    f"asset {asset.name!r} is in workflow {other[0]!r} (executor "
                    f"{other[1]}) and in workflow {workflow.name!r} (executor "
                    f"{workflow.executor}): one asset runs on one executor; give both "
                    "workflows the same executor or move the asset out of one"
                )
    return found
